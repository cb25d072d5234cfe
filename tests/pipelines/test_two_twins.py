# ruff: noqa: F811 - the imported fixtures are requested by name, which ruff reads as redefinitions
"""Two authors, two twins: the demo corpus (Ada Quill, the default author) and data/shore-notes/
(Maren Oyelaran) go through the feature and training pipelines locally, each registering its own
twin with its LoRA adapter on the shared base.

Real parts throughout, as in test_local_runs (whose home and Ada's feature run this module shares):
kfp.local subprocess tasks, the embedded MongoDB, Qdrant local mode, MLflow on sqlite, the tiny
random Llama as the base. GPTQ is skipped (quantize_bits=0) to keep two trainings affordable.
"""

import json
from pathlib import Path

import pytest
from tests.pipelines.test_local_runs import feature_run, local_home  # noqa: F401

from twinops.domain.twins import twin_model_name
from twinops.pipelines.local import run_local
from twinops.settings import Settings

pytestmark = pytest.mark.slow

SECOND_AUTHOR = "Maren Oyelaran"


def _train(local_home: Settings, tiny_llama: Path, author: str, features_version: str) -> None:
    params = {
        "author": author,
        "base_model": str(tiny_llama),
        "features_version": features_version,
        "max_chunks": "8",
        "dapt_max_steps": "1",
        "sft_max_steps": "1",
        "dpo_max_steps": "1",
        "reranker_max_steps": "1",
        "eval_max_questions": "1",
        "quantize_bits": "0",
        "dataset_options": json.dumps({"generator": "extractive"}),
    }
    run_local("training_pipeline", params, local_home)


def test_two_authors_make_two_registered_twins_on_one_base(
    feature_run, local_home: Settings, tiny_llama: Path
) -> None:
    from twinops.infra.registry import list_versions, twin_names

    second = run_local(
        "feature_pipeline",
        {"author": SECOND_AUTHOR, "sources": json.dumps(["data/shore-notes"]), "limit": "0"},
        local_home,
    )
    _train(local_home, tiny_llama, "Ada Quill", str(feature_run.output))
    _train(local_home, tiny_llama, SECOND_AUTHOR, str(second.output))

    twins = (twin_model_name("Ada Quill"), twin_model_name(SECOND_AUTHOR))
    assert twins == ("twin-llm", "twin-llm-maren-oyelaran")
    assert set(twins) <= set(twin_names(local_home))
    newest = {name: next(v for v in list_versions(local_home, (name,))) for name in twins}
    for version in newest.values():
        # Each twin is its merged model and its adapter on the one shared base (the tiny Llama).
        assert version.base_model == str(tiny_llama)
        config = json.loads((Path(version.adapter_dir) / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tiny_llama)
    ada, maren = newest.values()
    assert ada.adapter_dir != maren.adapter_dir and ada.source_uri != maren.source_uri
    # Each learned from its own author's datasets only.
    assert not set(ada.dataset_version_ids) & set(maren.dataset_version_ids)
