"""Materialize a dataset version: ``TWINOPS_HOME/datasets/<version_id>/`` with ``hf/`` + JSONL per split.

The version id hashes the rows, the config and the parents, so the same inputs give the same id
and the folder is written once. It is written to a temporary folder and renamed into place, so
a crash never leaves a half-written dataset behind a valid id.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from twinops.domain import DatasetKind, DatasetVersion
from twinops.domain.hashing import content_hash
from twinops.errors import NotFound
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.settings import Settings

SPLITS: dict[DatasetKind, tuple[str, ...]] = {
    DatasetKind.INSTRUCTION: ("train", "test"),
    DatasetKind.PREFERENCE: ("train", "test"),
    DatasetKind.GOLDEN: ("test",),
    DatasetKind.RERANKER: ("train", "test"),
}


def _features(kind: DatasetKind):
    """Explicit column types, so empty splits and every reload have the same schema."""
    from datasets import Features, List, Value

    message = List({"role": Value("string"), "content": Value("string")})
    text = Value("string")
    columns: dict[DatasetKind, dict[str, Any]] = {
        # source: who wrote the instruction (generator, template, query); rejected_source: who
        # wrote the rejected answer (generator, template).
        DatasetKind.INSTRUCTION: {
            "prompt": message,
            "completion": message,
            "document_id": text,
            "source": text,
        },
        DatasetKind.PREFERENCE: {
            "prompt": message,
            "chosen": message,
            "rejected": message,
            "document_id": text,
            "source": text,
            "rejected_source": text,
        },
        DatasetKind.GOLDEN: {"instruction": text, "reference": text, "document_id": text, "chunk_id": text},
        # document_id and candidates (the query's top-k Qdrant list) are what training splits and
        # ranks by: without them it would validate across sibling chunks and rank 1 + 3 texts.
        DatasetKind.RERANKER: {
            "query": text,
            "positive": text,
            "negatives": List(text),
            "chunk_id": text,
            "document_id": text,
            "candidates": List({"chunk_id": text, "content": text}),
        },
    }
    return Features(columns[kind])


def rows_hash(kind: DatasetKind, splits: dict[str, list[dict]]) -> str:
    return content_hash(kind.value, {name: splits[name] for name in sorted(splits)})


def save_dataset(
    settings: Settings,
    repository: DatasetVersionRepository,
    *,
    kind: DatasetKind,
    name: str,
    splits: dict[str, list[dict]],
    config: dict[str, Any],
    parents: tuple[str, ...],
    stats: dict[str, Any] | None = None,
) -> tuple[DatasetVersion, bool]:
    """Write the splits and record the version; return it and whether it is new."""
    draft = DatasetVersion(
        kind=kind, name=name, inputs_hash=rows_hash(kind, splits), config=config, parents=parents
    )
    folder = settings.datasets_dir / draft.id
    split_sizes = {split: len(rows) for split, rows in splits.items()}
    version = draft.model_copy(update={"uri": str(folder), "stats": {**(stats or {}), "splits": split_sizes}})
    if not _is_current(folder, kind):
        _write(folder, kind, splits)
    is_new = repository.save(version)
    return (version if is_new else repository.get(version.id)), is_new


def _is_current(folder: Path, kind: DatasetKind) -> bool:
    """Written, with the kind's columns as they are now: a folder of an older layout is rewritten."""
    marker = folder / "hf" / "dataset_dict.json"
    if not marker.exists():
        return False
    expected = set(_features(kind))
    for split in json.loads(marker.read_text(encoding="utf-8")).get("splits", []):
        info = folder / "hf" / split / "dataset_info.json"
        if (
            info.exists()
            and set(json.loads(info.read_text(encoding="utf-8")).get("features", {})) != expected
        ):
            return False
    return True


def _write(folder: Path, kind: DatasetKind, splits: dict[str, list[dict]]) -> None:
    from datasets import Dataset, DatasetDict
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    # The caller shows its own progress; per-shard bars would only clutter stderr.
    bars_were_on = not are_progress_bars_disabled()
    disable_progress_bars()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        features = _features(kind)
        DatasetDict(
            {
                # from_dict by column, so an empty split still gets every column and its type.
                split: Dataset.from_dict(
                    {col: [row.get(col) for row in rows] for col in features}, features=features
                )
                for split, rows in splits.items()
            }
        ).save_to_disk(str(staging / "hf"))
        for split, rows in splits.items():
            with (staging / f"{split}.jsonl").open("w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        if folder.exists():  # an earlier crash left an incomplete folder under this id
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if bars_were_on:
            enable_progress_bars()


def load_splits(version: DatasetVersion):
    """The version's ``datasets.DatasetDict`` (as training and evaluation read it).

    ``datasets`` saves an empty split without any arrow file and then cannot reload it, so an
    empty split is rebuilt here, empty, with the kind's columns.
    """
    from datasets import Dataset, DatasetDict

    folder = Path(version.uri) / "hf" if version.uri else None
    if folder is None or not (folder / "dataset_dict.json").exists():
        raise NotFound(
            f"dataset {version.id} has no files at {version.uri}: rebuild it with `twinops datasets build`"
        )
    names = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    splits = {}
    for name in names:
        if any((folder / name).glob("*.arrow")):
            splits[name] = Dataset.load_from_disk(str(folder / name))
        else:
            features = _features(version.kind)
            splits[name] = Dataset.from_dict({column: [] for column in features}, features=features)
    return DatasetDict(splits)
