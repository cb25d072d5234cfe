"""Fixtures for the paired component tests under ``components/<name>/tests``.

The suite's shared fixtures (``home``, ``settings``, ``mongo_settings``, ``tiny_llama``, ...) live in
``tests/conftest.py``, the drift ones (``champion_lineage``, ``small_options``, ...) in
``tests/monitoring/conftest.py``; they are loaded here so both trees use the same real services
and models.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[1] / "tests"
# The suite's fixtures, and the monitoring ones (a registered champion's lineage) for the drift steps.
for _name, _path in (
    ("twinops_shared_conftest", _TESTS / "conftest.py"),
    ("twinops_monitoring_conftest", _TESTS / "monitoring" / "conftest.py"),
):
    _spec = importlib.util.spec_from_file_location(_name, _path)
    _shared = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_shared)
    globals().update({name: value for name, value in vars(_shared).items() if not name.startswith("_")})


class Artifacts:
    """KFP artifact objects at paths under a tmp folder, as the executor would hand them over."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def new(self, kind: str, name: str) -> Any:
        from kfp import dsl

        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return getattr(dsl, kind)(name=name, uri=str(path), metadata={})

    def pointer(self, artifact_type: str, name: str, **pointer: Any) -> Any:
        """An input artifact holding a twinops pointer (what an upstream step wrote)."""
        artifact = self.new(artifact_type, name)
        body = {"schema": "twinops.pointer/v1", **pointer}
        Path(artifact.path).write_text(json.dumps(body), encoding="utf-8")
        return artifact


@pytest.fixture
def artifacts(tmp_path: Path) -> Artifacts:
    return Artifacts(tmp_path / "artifacts")


ESSAYS = {
    "gpu-pools.md": (
        "# Why GPU node pools pay off\n\n"
        "Training jobs and batch crawls fight for the same nodes unless you separate them. A tainted "
        "GPU pool with a matching toleration keeps the expensive accelerators for the steps that need "
        "them, while the cheap CPU steps run anywhere. I learned this the hard way, watching a crawler "
        "sit on an idle accelerator for a whole weekend while the fine-tuning job waited in the queue."
    ),
    "golden-sets.md": (
        "# Keep your golden set honest\n\n"
        "A golden set only measures something when no training example has seen it. Hold out whole "
        "documents, not sentences, hash every item, and check each training row for long overlaps "
        "before it reaches the trainer. The canary string in the dataset card tells you later whether "
        "a public model was trained on your evaluation data, which happens more often than people admit."
    ),
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two short essays in a folder, a source the ETL reads without network."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in ESSAYS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def model_settings(mongo_settings, bundled_models_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings whose embedder and base LLM are the cached bundled models (no pull, no network)."""
    from twinops.settings import get_settings

    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(bundled_models_dir / "all-minilm-l6-v2"))
    monkeypatch.setenv("TWINOPS_BASE_MODEL", str(bundled_models_dir / "smollm2-135m-instruct"))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def warehouse(model_settings, corpus: Path):
    """The essays crawled into the warehouse (the ingest library call), settings returned."""
    from twinops.etl.jobs import EtlJob
    from twinops.etl.runner import run_etl

    run_etl(EtlJob.for_author("Ada Quill", [str(corpus)]), model_settings)
    return model_settings


@pytest.fixture
def gate_artifact(warehouse, artifacts):
    """A ``gate`` dataset as clean-and-gate writes it (the library stage, saved like the component)."""
    from twinops.features.clean_gate import clean_and_gate
    from twinops.features.jobs import FeatureJob

    result = clean_and_gate(FeatureJob(author="Ada Quill"), warehouse)
    gate = artifacts.new("Dataset", "gate")
    Path(gate.path).write_text(result.model_dump_json(exclude_computed_fields=True), encoding="utf-8")
    return gate
