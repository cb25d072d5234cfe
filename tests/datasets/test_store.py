"""Dataset storage: what is saved reloads, including splits that came out empty."""

import shutil

from twinops.domain import DatasetKind
from twinops.infra.dataset_store import load_splits, save_dataset
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.mongo import connect


def test_an_empty_split_reloads_with_its_columns(mongo_settings) -> None:
    repository = DatasetVersionRepository(connect(mongo_settings))
    row = {"instruction": "What is GPTQ?", "reference": "A quantizer.", "document_id": "d", "chunk_id": "c"}
    version, is_new = save_dataset(
        mongo_settings,
        repository,
        kind=DatasetKind.GOLDEN,
        name="golden",
        splits={"test": [], "extra": [row]},
        config={},
        parents=(),
    )
    assert is_new
    splits = load_splits(version)
    assert len(splits["test"]) == 0
    assert set(splits["test"].column_names) == set(splits["extra"].column_names)
    assert splits["extra"][0]["instruction"] == "What is GPTQ?"


def test_a_reranker_row_reloads_with_its_document_and_candidate_list(mongo_settings) -> None:
    """Training splits validation by document_id and ranks each query's stored top-k list."""
    from twinops.datasets.reranker_pairs import RerankerPair

    pair = RerankerPair(
        "spare k7301",
        "Order spare k7301.",
        ("About chess.",),
        "c2",
        "doc-1",
        (("c1", "About chess."), ("c2", "Order spare k7301.")),
    )
    save = {
        "kind": DatasetKind.RERANKER,
        "name": "reranker",
        "splits": {"train": [pair.to_row()], "test": []},
        "config": {},
        "parents": (),
    }
    repository = DatasetVersionRepository(connect(mongo_settings))
    version, _ = save_dataset(mongo_settings, repository, **save)
    assert load_splits(version)["train"][0] == pair.to_row()

    # A folder written by an older layout (without those columns) under the same id is rewritten.
    from datasets import Dataset, DatasetDict

    shutil.rmtree(version.uri)
    old = {key: value for key, value in pair.to_row().items() if key not in ("document_id", "candidates")}
    DatasetDict({"train": Dataset.from_list([old])}).save_to_disk(f"{version.uri}/hf")
    again, _ = save_dataset(mongo_settings, repository, **save)
    assert again.id == version.id and load_splits(again)["train"][0] == pair.to_row()
