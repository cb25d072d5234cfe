"""The reference of drift detection: what the champion was trained and indexed on, embedded and fitted.

``--reference`` names it:

- ``latest``: the ``champion`` of ``twin-llm`` (without a champion: the newest instruction dataset);
- a version number (``3``): ``twin-llm`` version 3;
- a dataset version id (``instruction-…``, ``preference-…``, ``features-…``).

A model version links to the dataset versions it was trained on (``dataset_version_ids``); their
train splits give the ``queries`` (user turns) and ``answers`` (assistant turns), and the feature
versions among their ancestors give the ``chunks`` and the cleaned documents (the document
features, computed by ``features.feast_store.stats_frames`` as Feast computes them).

The ``queries`` are what users are expected to ask. When the train splits hold at least
``MIN_WRITTEN_QUERIES`` questions people wrote in their own words (``datasets.paraphrase``, source
``written``), those alone are the queries: the template prompts ("Explain X the way you would in
your post ...") are training material nobody types, and a reference holding them flagged natural
questions about the very pages the twin was trained on as drift (issue 26: with the prompts mixed
in, held-out natural questions drifted in nearly every batch; with the written questions alone,
in none, while off-topic questions still did). The label says which: ``...; queries: the N
questions people wrote``. With fewer, the queries are every user turn, as before.

``open_reference`` embeds each space through ``features.embedding.Embedder`` (the one embedding
path), fits a dimension reducer per space and saves everything under
``TWINOPS_HOME/drift/references/<id>/``. The id hashes the texts, the embedder and the reducer
settings, so the same reference is fitted once and then read back. When the reference is a model
version, the folder is also logged as MLflow artifacts of that version's run (``drift/<id>``) and
the version gets the tag ``drift_reference=<id>``: the detectors travel with the model version, and
a machine without the folder (another volume, a laptop) downloads it from there instead of fitting.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from twinops.datasets.paraphrase import WRITTEN
from twinops.domain.documents import CleanedDocument, utcnow
from twinops.domain.hashing import content_hash
from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.errors import ConfigError, NotFound
from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import (
    SpaceDetectors,
    SpaceReference,
    fit_evidently,
    load_calibration,
    save_calibration,
)
from twinops.settings import Settings

SPACES = ("queries", "answers", "chunks")
# Fewer written questions than this leave the queries to every user turn (see the module docstring).
MIN_WRITTEN_QUERIES = 20
LATEST = "latest"
REFERENCE_TAG = "drift_reference"


class ReferenceData(BaseModel):
    """The texts (and documents) a reference is made of, with where they came from."""

    model_config = ConfigDict(frozen=True)

    label: str = Field(description="What the reference is, for reports: 'twin-llm v3 [champion]'.")
    model_name: str | None = None
    model_version: str | None = None
    dataset_version_ids: tuple[str, ...] = ()
    texts: dict[str, list[str]] = Field(default_factory=dict)
    documents: list[CleanedDocument] = Field(default_factory=list)


class ReferenceInfo(BaseModel):
    """``reference.json``: the identity of a fitted reference."""

    id: str
    label: str
    model_name: str | None = None
    model_version: str | None = None
    dataset_version_ids: tuple[str, ...] = ()
    embedder_id: str
    embedder_version: str
    dimension: int
    spaces: dict[str, int] = Field(default_factory=dict, description="Texts per space.")
    created_at: datetime = Field(default_factory=utcnow)


@dataclass
class DriftReference:
    info: ReferenceInfo
    folder: Path
    spaces: dict[str, SpaceReference] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.info.id

    def space(self, name: str) -> SpaceReference:
        if name not in self.spaces:
            raise NotFound(
                f"reference {self.id} ({self.info.label}) has no {name!r} texts: it holds "
                f"{', '.join(sorted(self.spaces)) or 'none'}"
            )
        return self.spaces[name]

    def texts(self, name: str) -> list[str]:
        """The reference texts of space ``name``, in the order of its embeddings."""
        self.space(name)
        return list(_read_jsonl(self.folder / "spaces" / name / "texts.jsonl"))

    def detectors(self, name: str, batch_size: int, config: DriftConfig) -> SpaceDetectors:
        """evidently's detectors of space ``name`` for batches of ``batch_size`` (fitted once, saved)."""
        reference = self.space(name)
        folder = self.folder / "spaces" / name
        fitted = load_calibration(folder, reference, batch_size, config)
        if fitted is None:
            fitted = fit_evidently(reference, batch_size, config)
            save_calibration(folder, batch_size, fitted)
        return SpaceDetectors(reference=reference, detectors=list(fitted))


def references_dir(settings: Settings) -> Path:
    return settings.home / "drift" / "references"


# --- what the reference is made of -------------------------------------------------------------
def _read_jsonl(path: Path) -> Iterator[Any]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _turns(messages: Any, role: str) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    if not isinstance(messages, list):
        return []
    return [m.get("content") or "" for m in messages if isinstance(m, dict) and m.get("role") == role]


def dataset_texts(version: DatasetVersion) -> dict[str, list[str]]:
    """Queries and answers of an instruction/preference version's train split (JSONL beside it), and
    among the queries the ``written`` ones (questions people wrote)."""
    texts: dict[str, list[str]] = {"queries": [], "answers": [], "written": []}
    if not version.uri:
        return texts
    for row in _read_jsonl(Path(version.uri) / "train.jsonl"):
        users = _turns(row.get("prompt"), "user")
        if users:
            texts["queries"].append(users[-1])
            if row.get("source") == WRITTEN:
                texts["written"].append(users[-1])
        answer = row.get("completion") or row.get("chosen")
        texts["answers"] += _turns(answer, "assistant")[-1:]
    return texts


def feature_texts(version: DatasetVersion) -> tuple[list[str], list[CleanedDocument]]:
    """The chunks and cleaned documents of a feature version's artifact folder."""
    if not version.uri:
        return [], []
    folder = Path(version.uri)
    chunks = [row["content"] for row in _read_jsonl(folder / "chunks.jsonl")]
    documents = []
    for row in _read_jsonl(folder / "cleaned_documents.jsonl"):
        row.pop("content_hash", None)
        documents.append(CleanedDocument.model_validate(row))
    return chunks, documents


def reference_from_datasets(
    db,
    dataset_ids: tuple[str, ...],
    *,
    label: str,
    model_name: str | None = None,
    model_version: str | None = None,
) -> ReferenceData:
    """Gather the texts of ``dataset_ids`` and of the feature versions in their lineage."""
    from twinops.infra.dataset_versions import DatasetVersionRepository

    repository = DatasetVersionRepository(db)
    texts: dict[str, list[str]] = {space: [] for space in (*SPACES, "written")}
    documents: list[CleanedDocument] = []
    seen: set[str] = set()
    for dataset_id in dataset_ids:
        for version in repository.lineage(dataset_id):
            if version.id in seen:
                continue
            seen.add(version.id)
            if version.kind in (DatasetKind.INSTRUCTION, DatasetKind.PREFERENCE) and version.id == dataset_id:
                for space, found in dataset_texts(version).items():
                    texts[space] += found
            elif version.kind == DatasetKind.FEATURES:
                chunks, docs = feature_texts(version)
                texts["chunks"] += chunks
                documents += docs
    written = list(dict.fromkeys(texts.pop("written")))
    if len(written) >= MIN_WRITTEN_QUERIES:
        texts["queries"] = written
        label = f"{label}; queries: the {len(written)} questions people wrote"
    return ReferenceData(
        label=label,
        model_name=model_name,
        model_version=model_version,
        dataset_version_ids=dataset_ids,
        texts={space: found for space, found in texts.items() if found},
        documents=documents,
    )


def _model_version(settings: Settings, version: str | None, twin: str | None = None):
    """``twin``'s (default twin-llm's) ``version`` (its champion when None) as a ModelVersion; None when
    there is no champion.

    An unreachable MLflow is ``ServiceUnavailable`` (``list_versions``), never "no champion".
    """
    from twinops.infra.registry import CHAMPION, LLM_MODEL, list_versions

    twin = twin or LLM_MODEL
    versions = list_versions(settings, (twin,))
    if version is None:
        return next((v for v in versions if CHAMPION in v.aliases), None)
    found = next((v for v in versions if v.version == version), None)
    if found is None:
        raise NotFound(
            f"{twin} has no version {version}: pass one of "
            f"{', '.join(v.version for v in versions) or '(none registered)'} or latest to --reference"
        )
    return found


def resolve_reference(
    settings: Settings, reference: str, *, db=None, twin: str | None = None
) -> ReferenceData:
    """``latest``, a version number of ``twin`` (default twin-llm) or a dataset version id → the
    reference texts; each author's twin has its own."""
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    reference = reference.strip()
    if not reference:
        raise ConfigError(
            "--reference is empty: pass latest, a twin-llm version number or a dataset version id"
        )
    db = db if db is not None else connect(settings)
    if reference == LATEST or reference.isdigit():
        model = _model_version(settings, None if reference == LATEST else reference, twin)
        if model is not None:
            label = f"{model.name} v{model.version}" + (" [champion]" if reference == LATEST else "")
            return reference_from_datasets(
                db, model.dataset_version_ids, label=label, model_name=model.name, model_version=model.version
            )
        newest = DatasetVersionRepository(db).latest(DatasetKind.INSTRUCTION)
        if newest is None:
            raise NotFound(
                "there is no champion and no instruction dataset to take as the reference: "
                "run `twinops datasets build` (and train), or pass --reference DATASET_VERSION_ID"
            )
        return reference_from_datasets(db, (newest.id,), label=f"{newest.id} (newest; no champion)")
    version = DatasetVersionRepository(db).get(reference)
    return reference_from_datasets(db, (version.id,), label=version.id)


# --- fitting and saving ------------------------------------------------------------------------
def _sample(texts: list[str], limit: int, seed: int) -> list[str]:
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if len(unique) <= limit:
        return unique
    keep = np.random.default_rng(seed).choice(len(unique), size=limit, replace=False)
    return [unique[i] for i in sorted(keep)]


def reference_id(data: ReferenceData, embedder_id: str, embedder_version: str, config: DriftConfig) -> str:
    texts = {space: _sample(found, config.max_reference, config.seed) for space, found in data.texts.items()}
    digest = content_hash(
        texts, embedder_id, embedder_version, config.reducer, config.reduced_dimension, config.seed
    )
    return f"drift-{digest[:16]}"


def open_reference(
    settings: Settings, data: ReferenceData, embedder, config: DriftConfig, *, log_to_registry: bool = True
) -> DriftReference:
    """The fitted reference for ``data``: read back when saved, else embedded, fitted and saved."""
    identifier = reference_id(data, embedder.model_id, embedder.version, config)
    folder = references_dir(settings) / identifier
    # Kept beside a registered model version (MLflow artifacts and tag) when the data names one.
    beside_version = bool(log_to_registry and data.model_name and data.model_version)
    if (folder / "reference.json").exists():
        reference = load_reference(folder)
        if beside_version:
            # Another version trained on the same data shares the folder; it gets the copy too.
            log_beside_model_version(settings, reference, data.model_name, data.model_version)
        return reference
    if beside_version:
        downloaded = _download_beside_model_version(settings, data.model_name, data.model_version, folder)
        if downloaded is not None:
            return downloaded
    if not data.texts:
        raise NotFound(f"the reference {data.label} holds no texts: its dataset versions have no rows")
    spaces: dict[str, SpaceReference] = {}
    kept: dict[str, list[str]] = {}
    for space, found in data.texts.items():
        texts = _sample(found, config.max_reference, config.seed)
        if len(texts) < 8:
            continue  # too few to test against; the report says which spaces it has
        vectors = embedder.encode(texts, batch_size=config.embed_batch_size)
        spaces[space] = SpaceReference.fit(space, vectors, config)
        kept[space] = texts
    if not spaces:
        raise ConfigError(
            f"the reference {data.label} has fewer than 8 texts in every space: use a larger dataset version"
        )
    info = ReferenceInfo(
        id=identifier,
        label=data.label,
        model_name=data.model_name,
        model_version=data.model_version,
        dataset_version_ids=data.dataset_version_ids,
        embedder_id=embedder.model_id,
        embedder_version=embedder.version,
        dimension=embedder.dimension,
        spaces={space: len(texts) for space, texts in kept.items()},
    )
    _save(folder, info, spaces, kept, data.documents)
    reference = DriftReference(info=info, folder=folder, spaces=spaces)
    if beside_version:
        log_beside_model_version(settings, reference, data.model_name, data.model_version)
    return reference


def _save(
    folder: Path,
    info: ReferenceInfo,
    spaces: dict[str, SpaceReference],
    texts: dict[str, list[str]],
    documents: list[CleanedDocument],
) -> None:
    """Written under a temporary name and renamed, so a saved id always has a whole folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for space, reference in spaces.items():
        reference.save(staging / "spaces" / space)
        with (staging / "spaces" / space / "texts.jsonl").open("w", encoding="utf-8") as out:
            for text in texts[space]:
                out.write(json.dumps(text, ensure_ascii=False) + "\n")
    with (staging / "documents.jsonl").open("w", encoding="utf-8") as out:
        for document in documents:
            out.write(document.model_dump_json() + "\n")
    (staging / "reference.json").write_text(info.model_dump_json(indent=2), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def load_reference(folder: Path) -> DriftReference:
    info = ReferenceInfo.model_validate_json((folder / "reference.json").read_text(encoding="utf-8"))
    spaces = {space: SpaceReference.load(folder / "spaces" / space, space) for space in info.spaces}
    return DriftReference(info=info, folder=folder, spaces=spaces)


def reference_documents(reference: DriftReference) -> list[CleanedDocument]:
    rows = []
    for row in _read_jsonl(reference.folder / "documents.jsonl"):
        row.pop("content_hash", None)
        rows.append(CleanedDocument.model_validate(row))
    return rows


def _download_beside_model_version(settings: Settings, name: str, version: str, folder: Path):
    """The reference saved beside the model version (its run's ``drift/<id>``), copied into ``folder``.

    None when the version names another reference, or the registry cannot give it: then it is fitted.
    """
    from mlflow.exceptions import MlflowException

    from twinops.infra import registry

    staging = folder.with_name(f".{folder.name}.{os.getpid()}.download")
    try:
        with registry.fast_fail(), contextlib.suppress(MlflowException, OSError):
            mlflow_client = registry.client(settings)
            found = mlflow_client.get_model_version(name, version)
            if (found.tags or {}).get(REFERENCE_TAG) != folder.name or not found.run_id:
                return None
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            local = Path(mlflow_client.download_artifacts(found.run_id, f"drift/{folder.name}", str(staging)))
            if not (local / "reference.json").is_file():
                return None
            local.rename(folder)  # whole, like a fitted folder
            return load_reference(folder)
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def log_beside_model_version(settings: Settings, reference: DriftReference, name: str, version: str) -> None:
    """The reference folder as artifacts of the model version's run, and its id as a version tag.

    Once per version: a version already tagged with this reference is left as it is.
    """
    from mlflow.exceptions import MlflowException

    from twinops.infra import registry

    # The detectors work without this copy: a registry that refuses it must not stop the fit.
    with registry.fast_fail(), contextlib.suppress(MlflowException):
        mlflow_client = registry.client(settings)
        found = mlflow_client.get_model_version(name, version)
        if (found.tags or {}).get(REFERENCE_TAG) == reference.id:
            return
        if found.run_id:
            mlflow_client.log_artifacts(found.run_id, str(reference.folder), f"drift/{reference.id}")
        mlflow_client.set_model_version_tag(name, version, REFERENCE_TAG, reference.id)
