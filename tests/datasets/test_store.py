"""Dataset storage: what is saved reloads, including splits that came out empty."""

from twinops.datasets.store import load_splits, save_dataset
from twinops.domain import DatasetKind
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
