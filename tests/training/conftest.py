"""Training fixtures: MLflow on a sqlite file, and small datasets in exactly contract 4's format."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.settings import Settings, get_settings

TOPICS = ["gardening", "sourdough", "cycling", "chess", "astronomy", "woodwork", "jazz", "hiking"]


def instruction_rows(count: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"Write a short note about {TOPICS[i % 8]}."}],
            "completion": [
                {"role": "assistant", "content": f"I love {TOPICS[i % 8]}: it teaches patience, step {i}."}
            ],
            "document_id": f"doc-{i}",
        }
        for i in range(count)
    ]


def preference_rows(count: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"What do you think of {TOPICS[i % 8]}?"}],
            "chosen": [{"role": "assistant", "content": f"Honestly, {TOPICS[i % 8]} keeps me sane."}],
            "rejected": [{"role": "assistant", "content": "As an AI language model, I have no opinion."}],
            "document_id": f"doc-{i}",
        }
        for i in range(count)
    ]


def reranker_rows(count: int) -> list[dict]:
    return [
        {
            "query": f"what does the author say about {TOPICS[i % 8]}?",
            "positive": f"My take on {TOPICS[i % 8]}: it teaches patience.",
            "negatives": [f"A note on {TOPICS[(i + 3) % 8]} and tools.", "Unrelated text about taxes."],
            "chunk_id": f"chunk-{i}",
        }
        for i in range(count)
    ]


ROWS = {
    DatasetKind.INSTRUCTION: instruction_rows,
    DatasetKind.PREFERENCE: preference_rows,
    DatasetKind.RERANKER: reranker_rows,
}


@pytest.fixture
def dataset_rows() -> dict[DatasetKind, Callable[[int], list[dict]]]:
    """Row builders per kind, in contract 4's columns."""
    return ROWS


@pytest.fixture
def training_settings(mongo_settings: Settings, mlflow_settings: Settings) -> Settings:
    """Real MongoDB wire server + MLflow on a sqlite file in this test's folder."""
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def make_dataset(training_settings: Settings) -> Callable[..., DatasetVersion]:
    """Save a DatasetVersion whose ``uri`` holds ``hf/`` (save_to_disk) and one jsonl per split."""
    from datasets import Dataset, DatasetDict

    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    def _make(
        kind: DatasetKind,
        train: int = 8,
        test: int = 4,
        name: str = "test-author",
        rows: list[dict] | None = None,
    ) -> DatasetVersion:
        """``rows`` (train first, then test) replace the kind's generated rows."""
        rows = rows if rows is not None else ROWS[kind](train + test)
        version = DatasetVersion(kind=kind, name=name, inputs_hash=f"{kind}-{train}-{test}", config={})
        folder = training_settings.datasets_dir / version.id
        splits = DatasetDict(
            {"train": Dataset.from_list(rows[:train]), "test": Dataset.from_list(rows[train:])}
        )
        splits.save_to_disk(str(folder / "hf"))
        for split, data in splits.items():
            data.to_json(str(folder / f"{split}.jsonl"))
        version = version.model_copy(update={"uri": str(folder)})
        DatasetVersionRepository(connect(training_settings)).save(version)
        return version

    return _make
