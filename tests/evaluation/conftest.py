"""Evaluation fixtures: contract-4 dataset folders, a handcrafted Qdrant collection, a fake judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.chat_stand_in import ChatStandIn

from twinops.settings import get_settings

CHUNKS = {
    "11111111-1111-1111-1111-111111111111": "Feature stores keep training and serving features consistent.",
    "22222222-2222-2222-2222-222222222222": "Qdrant stores embeddings and answers nearest-neighbour queries.",
    "33333333-3333-3333-3333-333333333333": "LoRA adapters fine-tune a few low-rank weights.",
    "44444444-4444-4444-4444-444444444444": "GPTQ quantizes weights to four bits with second-order data.",
    "55555555-5555-5555-5555-555555555555": "Kubeflow Pipelines run each step as a container on Kubernetes.",
}
GOLDEN = [
    (
        "Why use a feature store?",
        "It keeps features the same in training and serving.",
        "11111111-1111-1111-1111-111111111111",
    ),
    (
        "Where do the embeddings for RAG live?",
        "In Qdrant, which answers nearest-neighbour queries.",
        "22222222-2222-2222-2222-222222222222",
    ),
    (
        "How does LoRA fine-tune a model?",
        "It trains small low-rank adapter weights only.",
        "33333333-3333-3333-3333-333333333333",
    ),
    (
        "What does GPTQ do to weights?",
        "It quantizes them to four bits with second-order information.",
        "44444444-4444-4444-4444-444444444444",
    ),
]
AUTHOR_STYLE = [
    "Ship it small. Version the data, track the run, then promote only when the numbers say so.",
    "I keep my pipelines boring: one step, one container, one artifact you can point at.",
    "Here's the trick: log the dataset version with the model, or you'll never debug it.",
    "Stop tuning prompts by feel. Build a golden set, measure, and move on.",
    "My rule of thumb: if the feature isn't in the store, it doesn't exist in prod.",
    "Quantize late, evaluate twice. Four bits are cheap until your perplexity says otherwise.",
    "Retrieval first, generation second. A bad chunk can't be rescued by a good model.",
    "Don't trust a demo. Trust a dashboard that compares champion and challenger.",
]
BASE_STYLE = [
    "As an AI language model, I can provide an overview of the concept of machine learning operations.",
    "Certainly! Here is a comprehensive explanation of the various aspects of data pipelines.",
    "In conclusion, there are numerous factors to consider when deploying large language models.",
    "It is important to note that quantization may affect the accuracy of the model in various ways.",
    "Sure! Below is a detailed description of the benefits of using a vector database in applications.",
    "Overall, evaluation is a crucial component of the machine learning lifecycle for organizations.",
    "Thank you for your question. Feature stores offer several advantages for enterprises of all sizes.",
    "Firstly, it is essential to understand the fundamental principles underlying retrieval augmentation.",
]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def golden_dir(tmp_path: Path) -> Path:
    """A golden dataset folder (contract 4: split `test` with instruction/reference/document_id/chunk_id)."""
    folder = tmp_path / "datasets" / "golden-test"
    _write_jsonl(
        folder / "test.jsonl",
        [
            {"instruction": q, "reference": r, "document_id": f"doc-{i}", "chunk_id": c}
            for i, (q, r, c) in enumerate(GOLDEN)
        ],
    )
    return folder


@pytest.fixture
def preference_dir(tmp_path: Path) -> Path:
    """A preference dataset folder (contract 4: prompt / chosen / rejected in conversational form)."""
    folder = tmp_path / "datasets" / "preference-test"
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Write about topic {i}"}],
            "chosen": [{"role": "assistant", "content": author}],
            "rejected": [{"role": "assistant", "content": base}],
            "document_id": f"doc-{i}",
        }
        for i, (author, base) in enumerate(zip(AUTHOR_STYLE, BASE_STYLE, strict=True))
    ]
    _write_jsonl(folder / "train.jsonl", rows[:6])
    _write_jsonl(folder / "test.jsonl", rows[6:])
    return folder


@pytest.fixture
def eval_settings(home: Path, bundled_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings with the bundled MiniLM, a sqlite MLflow store and local Qdrant under the test's home."""
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(bundled_models_dir / "all-minilm-l6-v2"))
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def chunk_collection(eval_settings) -> dict[str, str]:
    """A real local-mode Qdrant collection behind the `twin_chunks` alias (contract 3 payload)."""
    from qdrant_client import models

    from twinops.infra.qdrant import open_qdrant
    from twinops.models.loaders import load_embedder

    embedder = load_embedder(eval_settings)
    vectors = embedder.encode(list(CHUNKS.values()), normalize_embeddings=True)
    name = "twin_chunks__all-minilm-l6-v2__test"
    with open_qdrant(eval_settings) as client:
        client.create_collection(
            name, vectors_config=models.VectorParams(size=len(vectors[0]), distance=models.Distance.COSINE)
        )
        client.upsert(
            name,
            points=[
                models.PointStruct(
                    id=chunk_id,
                    vector=[float(x) for x in vector],
                    payload={
                        "chunk_id": chunk_id,
                        "document_id": f"doc-{i}",
                        "author_id": "author-1",
                        "author_name": "Ada",
                        "category": "article",
                        "platform": "blog",
                        "source_url": f"https://example.org/{i}",
                        "published_at": None,
                        "content_hash": f"h{i}",
                        "chunk_index": 0,
                        "content": content,
                        "embedding_model_id": "minilm",
                        "embedding_model_version": "test",
                    },
                )
                for i, ((chunk_id, content), vector) in enumerate(zip(CHUNKS.items(), vectors, strict=True))
            ],
        )
        client.update_collection_aliases(
            change_aliases_operations=[
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=name, alias_name="twin_chunks")
                )
            ]
        )
    return CHUNKS


def _judge_reply(path: str, body: dict) -> tuple[int, dict | None]:
    if body.get("model") != "fake-judge":
        return 404, None
    # A structured-output server answers with the JSON the request's schema asks for.
    content = '{"accuracy": {"analysis": "ok", "score": 3}, "style": {"analysis": "stiff", "score": 2}}'
    return 200, {"choices": [{"message": {"role": "assistant", "content": content}}]}


@pytest.fixture
def fake_judge() -> Iterator[tuple[str, list[dict]]]:
    """A minimal OpenAI-compatible /v1/chat/completions judge on 127.0.0.1 (a real HTTP server):
    its URL and the requests it got (``{"path", "body", "auth"}``)."""
    with ChatStandIn(_judge_reply) as server:
        yield server.url, server.requests


@pytest.fixture
def golden_triples() -> list[tuple[str, str, str]]:
    """(instruction, reference, relevant chunk id) of the golden rows above."""
    return list(GOLDEN)


@pytest.fixture
def style_corpus() -> tuple[list[str], list[str]]:
    """(author texts, base-model texts) as in the preference set."""
    return list(AUTHOR_STYLE), list(BASE_STYLE)
