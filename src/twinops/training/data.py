"""Resolve a dataset version (contract 4) and load its ``hf/`` DatasetDict for a training stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.errors import ConfigError, NotFound
from twinops.settings import Settings

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

# The columns each kind must carry for the trainers (contract 4).
REQUIRED_COLUMNS: dict[DatasetKind, tuple[str, ...]] = {
    DatasetKind.INSTRUCTION: ("prompt", "completion"),
    DatasetKind.PREFERENCE: ("prompt", "chosen", "rejected"),
    DatasetKind.RERANKER: ("query", "positive", "negatives"),
}


@dataclass(frozen=True)
class LoadedDataset:
    version: DatasetVersion
    splits: DatasetDict
    path: Path

    @property
    def train(self) -> Dataset:
        return self.splits["train"]

    @property
    def test(self) -> Dataset | None:
        return self.splits.get("test")


def resolve_version(reference: str, kind: DatasetKind, settings: Settings) -> DatasetVersion:
    """The DatasetVersion ``reference`` names (an id or ``latest``), checked to be of ``kind``."""
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    repository = DatasetVersionRepository(connect(settings))
    if reference == "latest":
        version = repository.latest(kind)
        if version is None:
            raise NotFound(
                f"there is no {kind.value} dataset version yet: build one with `twinops datasets build` "
                "or pass --dataset VERSION_ID"
            )
        return version
    version = repository.get(reference)
    if version.kind != kind:
        raise ConfigError(
            f"dataset version {reference!r} is a {version.kind.value} dataset, this stage needs a "
            f"{kind.value} dataset: pass a {kind.value} version id or `latest`"
        )
    return version


def load_dataset_version(reference: str, kind: DatasetKind, settings: Settings) -> LoadedDataset:
    """Load the ``hf/`` folder of the version, with a ``train`` split and the kind's columns."""
    from twinops.infra.dataset_store import load_splits

    version = resolve_version(reference, kind, settings)
    folder = Path(version.uri) / "hf" if version.uri else None
    if folder is None or not folder.exists():
        raise NotFound(
            f"dataset version {version.id} has no data at {folder or '(no uri)'}: "
            "rebuild it with `twinops datasets build`"
        )
    splits = load_splits(version)
    if not hasattr(splits, "keys") or "train" not in splits:
        raise ConfigError(f"dataset version {version.id} at {folder} has no `train` split: rebuild it")
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in splits["train"].column_names]
    if missing:
        raise ConfigError(
            f"dataset version {version.id} lacks the column(s) {', '.join(missing)} a {kind.value} "
            "dataset needs: rebuild it with `twinops datasets build`"
        )
    if len(splits["train"]) == 0:
        raise ConfigError(f"dataset version {version.id} has an empty train split: rebuild it with more data")
    return LoadedDataset(version=version, splits=splits, path=folder)


def capped(dataset: Dataset | None, limit: int | None) -> Dataset | None:
    """The first ``limit`` rows (smoke runs and bounded evaluation); ``None`` passes through."""
    if dataset is None or limit is None or len(dataset) <= limit:
        return dataset
    return dataset.select(range(limit))
