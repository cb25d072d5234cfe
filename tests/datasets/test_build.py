"""build_datasets end to end: real MongoDB wire server, Qdrant local mode, real MiniLM, MLflow on sqlite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.datasets import CanaryLeak, DatasetJob, EmptyCorpus, build_datasets
from twinops.domain import DatasetKind
from twinops.errors import NotFound
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.mongo import connect
from twinops.settings import Settings, get_settings

pytestmark = pytest.mark.slow  # generates with the tiny model

EXTRACTIVE = DatasetJob(generator="extractive", log_to_mlflow=False)
MESSAGE = [{"role": "user", "content": "x"}]


def _training_strings(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False)


def test_build_writes_the_contract_datasets(
    feature_run, dataset_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets import load_from_disk

    features = feature_run()
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    get_settings.cache_clear()
    settings = get_settings()
    summary = build_datasets(EXTRACTIVE.model_copy(update={"log_to_mlflow": True}), settings)

    assert summary.features_version == features.id and summary.chunks == 10 and summary.documents == 5
    assert set(summary.versions) == {"instruction", "preference", "golden", "reranker"}
    repository = DatasetVersionRepository(connect(settings))
    golden = repository.get(summary.versions["golden"])
    assert golden.config["canary"].startswith("TWINOPS-CANARY-")
    golden_documents = set(golden.config["holdout_documents"])
    assert 1 <= len(golden_documents) < 5

    splits = {kind: load_from_disk(str(Path(uri) / "hf")) for kind, uri in summary.uris.items()}
    instruction = splits["instruction"]
    assert set(instruction) == {"train", "test"} and instruction["train"].num_rows > 0
    row = instruction["train"][0]
    assert set(row) == {"prompt", "completion", "document_id", "source"}
    assert row["prompt"][0]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    preference = splits["preference"]["train"][0]
    assert set(preference) == {"prompt", "chosen", "rejected", "document_id", "source", "rejected_source"}
    assert preference["chosen"][0]["role"] == preference["rejected"][0]["role"] == "assistant"
    assert set(splits["golden"]) == {"test"}
    assert set(splits["golden"]["test"].column_names) == {
        "instruction",
        "reference",
        "document_id",
        "chunk_id",
    }
    reranker = splits["reranker"]["train"][0]
    # The top-k candidate list serving would rerank, and the document (siblings count as wrong).
    assert set(reranker) == {"query", "positive", "negatives", "chunk_id", "document_id", "candidates"}
    wrong = [c["content"] for c in reranker["candidates"] if c["chunk_id"] != reranker["chunk_id"]]
    assert wrong[: len(reranker["negatives"])] == reranker["negatives"], "the best-ranked wrong ones"
    assert 1 <= len(reranker["negatives"]) <= 3 and reranker["positive"] not in reranker["negatives"]

    # JSONL per split, same rows as the HF dataset.
    for kind, uri in summary.uris.items():
        for split, dataset in splits[kind].items():
            lines = (Path(uri) / f"{split}.jsonl").read_text().splitlines()
            assert len(lines) == dataset.num_rows == summary.split_sizes[kind][split]

    # No golden document, nor any of its text, ever reaches a training split.
    golden_texts = [r["reference"] for r in splits["golden"]["test"]]
    assert golden_texts
    for kind in ("instruction", "preference", "reranker"):
        for train_row in splits[kind]["train"]:
            assert train_row.get("document_id") not in golden_documents
            assert not any(text in _training_strings(train_row) for text in golden_texts)
    assert {r["document_id"] for r in splits["instruction"]["test"]} <= golden_documents

    # Lineage: feature run, generator and prompt versions.
    version = repository.get(summary.versions["instruction"])
    assert features.id in version.parents and "generator:extractive@2" in version.parents
    assert any(parent.startswith("prompt:instruction-backtranslation@") for parent in version.parents)
    assert golden.id in version.parents
    assert repository.latest(DatasetKind.INSTRUCTION).id == version.id

    # MLflow: one run in twinops-datasets with every split logged as a dataset input.
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(summary.mlflow_run_id)
    assert len(run.inputs.dataset_inputs) == 7
    digests = {item.dataset.digest for item in run.inputs.dataset_inputs}
    assert digests == set(summary.versions.values())
    assert run.data.tags["dataset_version_ids"].count(",") == 3


def test_same_inputs_give_the_same_versions(feature_run, dataset_settings: Settings, corpus_kit) -> None:
    feature_run()
    first = build_datasets(EXTRACTIVE, dataset_settings)
    second = build_datasets(EXTRACTIVE, dataset_settings)
    assert first.versions == second.versions and len(first.new_versions) == 4
    assert second.new_versions == []
    repository = DatasetVersionRepository(connect(dataset_settings))
    hashes = {repository.get(v).inputs_hash for v in first.versions.values()}
    assert len(hashes) == 4

    changed = {**corpus_kit.documents, "A new essay": ["Something new to say about databases. " * 6]}
    feature_run(changed)
    third = build_datasets(EXTRACTIVE, dataset_settings)
    assert third.versions["instruction"] != first.versions["instruction"]


def test_the_canary_in_training_data_stops_the_build(
    feature_run, dataset_settings: Settings, corpus_kit
) -> None:
    feature_run()
    first = build_datasets(EXTRACTIVE, dataset_settings)
    canary = (
        DatasetVersionRepository(connect(dataset_settings)).get(first.versions["golden"]).config["canary"]
    )
    train_lines = (Path(first.uris["instruction"]) / "train.jsonl").read_text().splitlines()
    training_docs = {json.loads(line)["document_id"] for line in train_lines}
    # Leak the canary into the training documents only, so the golden set (and its canary) stay the same.
    cleaned, _ = corpus_kit.make_chunks()
    planted = {
        title: [f"{part} {canary}" if doc.document_id in training_docs else part for part in parts]
        for doc, (title, parts) in zip(cleaned, corpus_kit.documents.items(), strict=True)
    }
    feature_run(planted, index=False)
    folders_before = sorted(p.name for p in dataset_settings.datasets_dir.iterdir())
    with pytest.raises(CanaryLeak, match=canary):
        build_datasets(EXTRACTIVE.model_copy(update={"reranker": False}), dataset_settings)
    # Nothing half-written: the failed build left no dataset behind.
    assert sorted(p.name for p in dataset_settings.datasets_dir.iterdir()) == folders_before


def test_an_empty_corpus_names_the_feature_step(feature_run, dataset_settings: Settings, corpus_kit) -> None:
    with pytest.raises(NotFound, match="twinops features"):
        build_datasets(EXTRACTIVE, dataset_settings)
    feature_run({}, index=False)
    with pytest.raises(EmptyCorpus, match="twinops features"):
        build_datasets(EXTRACTIVE, dataset_settings)
    feature_run()
    with pytest.raises(EmptyCorpus, match="Someone Else"):
        build_datasets(EXTRACTIVE.model_copy(update={"author": "Someone Else"}), dataset_settings)
    summary = build_datasets(
        EXTRACTIVE.model_copy(update={"author": corpus_kit.author, "reranker": False}), dataset_settings
    )
    assert "reranker" not in summary.versions and summary.counts["instruction"] > 0


def test_openai_backend_drops_bad_items_without_crashing(
    feature_run, dataset_settings: Settings, chat_server, monkeypatch: pytest.MonkeyPatch, corpus_kit
) -> None:
    documents = {
        **corpus_kit.documents,
        "Broken replies": ["ALWAYSBAD " + "words that never become JSON " * 5],
    }
    feature_run(documents, index=False)
    monkeypatch.setenv("TWINOPS_GENERATOR_URL", chat_server.url)
    monkeypatch.setenv("TWINOPS_GENERATOR_MODEL", "fake-model")
    get_settings.cache_clear()
    job = DatasetJob(generator="openai", reranker=False, log_to_mlflow=False, max_pair_similarity=1.0)
    summary = build_datasets(job, get_settings())
    assert summary.generator == "generator:openai@fake-model"
    # The broken document's question, whichever side of the split it fell on; its rows are templates.
    asked = ("instruction:generator_invalid_json", "golden:generator_invalid_json")
    assert sum(summary.drops.get(key, 0) for key in asked) == 1
    assert summary.counts["instruction"] > 0 and summary.counts["preference"] > 0


def test_local_backend_build_on_tiny_llama(feature_run, dataset_settings: Settings) -> None:
    """The random tiny model writes nonsense: every output is dropped with a reason and its row
    rebuilt from the templates, so every chunk still gives its rows and the golden set is full."""
    feature_run(index=False)
    job = DatasetJob(
        generator="local", max_chunks=4, reranker=False, log_to_mlflow=False, batch_size=4, budget=None
    )
    summary = build_datasets(job, dataset_settings)
    assert summary.generator.startswith("generator:local@") and summary.chunks == 4
    assert set(summary.versions) == {"instruction", "preference", "golden"}
    assert summary.generator_seconds > 0
    # Each of the 4 chunks asked the generator once for its question: kept (in the train or test
    # split) or dropped with a reason, its row then made by a template.
    asked = [v for k, v in summary.drops.items() if k.startswith(("instruction:generator_", "golden:"))]
    assert summary.sources["instruction"].get("generator", 0) + sum(asked) == 4
    golden_questions = summary.sources["golden"]
    assert sum(golden_questions.values()) >= 1
