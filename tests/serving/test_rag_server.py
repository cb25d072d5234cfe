"""The twin-rag server end to end, as `twinops serve all` runs it: the real RAG process over a real
local Qdrant index and the embedded MongoDB, generating through the real LLM server (SmolLM2) and
reranking through the real reranker server, asked by the openai SDK, kserve's V2 REST client,
plain HTTP and `twinops ask`.

The Feast online store is not materialized here, so the author's context is absent: the RAG
server degrades to no context, which is part of what is checked (an answer still comes back).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import start_server

from twinops.domain import Author, Category, Platform
from twinops.domain.documents import Chunk
from twinops.features.embedding import embed_chunks, open_embedder
from twinops.features.vector_store import VectorStore
from twinops.infra.documents import AuthorRepository
from twinops.infra.mongo import connect
from twinops.infra.qdrant import open_qdrant
from twinops.infra.request_log import RequestLogRepository
from twinops.serving.local import LocalServer, LocalServers, ask_rag
from twinops.settings import Settings, get_settings

pytestmark = pytest.mark.slow

ADA = Author(full_name="Ada Quill")
GRACE = Author(full_name="Grace Bell")
TEXTS = {
    "chunking": (ADA, "Token-bounded chunks that respect headings and paragraphs survived production."),
    "registry": (ADA, "A model registry alias such as champion tells the server which version to load."),
    "gpu": (GRACE, "GPU node pools keep expensive accelerators for the training steps that need them."),
}
LATE = (ADA, "Zebras have black and white stripes that confuse biting flies, my favourite fact.")

FEEDBACK_TOKEN = "rag-server-feedback-token"


def _chunk(key: str, author: Author, text: str) -> Chunk:
    return Chunk(
        document_id=f"doc-{key}",
        author_id=author.id,
        author_name=author.full_name,
        platform=Platform.LOCAL,
        category=Category.ARTICLES,
        source_url=f"file://corpus/{key}.md",
        chunk_index=0,
        content=text,
        token_count=len(text.split()),
        document_content_hash=f"hash-{key}",
    )


def _index(settings: Settings, chunks: list[Chunk]) -> None:
    """Write ``chunks`` into a new collection and move the alias, as a feature run does."""
    embedder = open_embedder(settings)
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        target = store.prepare(
            embedder.slug, embedder.version, embedder.dimension, embedder=embedder.model_id
        )
        store.upsert_chunks(target.chunks, embed_chunks(embedder, chunks, batch_size=8))
        store.switch_aliases(target)


@contextmanager
def planted_rag_env(
    home: Path, database: str, embedded_mongodb: str, minilm_dir: Path, **extra: str
) -> Iterator[Settings]:
    """Only these TWINOPS_* (``extra`` as more of them) for this process and a RAG subprocess, over
    the planted index and warehouse (Ada's and Grace's chunks) in ``database``."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("TWINOPS_"):
                patch.delenv(key)
        variables = {
            "TWINOPS_HOME": str(home),
            "TWINOPS_MONGODB_URI": embedded_mongodb,
            "TWINOPS_MONGODB_DATABASE": database,
            "TWINOPS_EMBEDDING_MODEL": str(minilm_dir),
            **extra,
        }
        for key, value in variables.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        settings = get_settings()
        authors = AuthorRepository(connect(settings))
        authors.upsert(ADA)
        authors.upsert(GRACE)
        _index(settings, [_chunk(k, a, t) for k, (a, t) in TEXTS.items()])
        yield settings
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def rag_env(
    tmp_path_factory: pytest.TempPathFactory, embedded_mongodb: str, minilm_dir: Path
) -> Iterator[Settings]:
    """TWINOPS_* for this process and the RAG subprocess: the planted index and warehouse."""
    home = tmp_path_factory.mktemp("rag-server-home")
    with planted_rag_env(
        home, "t_rag_server", embedded_mongodb, minilm_dir, TWINOPS_FEEDBACK_TOKEN=FEEDBACK_TOKEN
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
def rag_server(
    rag_env: Settings, llm_server: LocalServer, reranker_server: LocalServer
) -> Iterator[LocalServer]:
    with LocalServers(rag_env) as servers:
        yield start_server(
            servers,
            "rag",
            "--llm_url",
            llm_server.openai_url,
            "--reranker_url",
            reranker_server.openai_url,
            "--index_refresh_seconds",
            "0",
            "--max_tokens",
            "16",  # under the test LLM server's --max_tokens_limit
        )


def test_any_openai_client_gets_a_grounded_answer_with_sources_and_a_logged_request(rag_server, rag_env):
    import openai

    client = openai.OpenAI(base_url=rag_server.openai_url, api_key="unused")
    reply = client.chat.completions.create(
        model="twin-rag",
        messages=[{"role": "user", "content": "Which chunks survived production?"}],
        max_tokens=24,
        temperature=0,
    )
    assert reply.choices[0].message.content.strip()
    extra = reply.model_extra
    source_ids = [s["chunk_id"] for s in extra["sources"]]
    chunking = _chunk("chunking", *TEXTS["chunking"]).id
    assert chunking in source_ids, "the chunk that answers the question grounds the answer"
    assert _chunk("gpu", *TEXTS["gpu"]).id not in source_ids, "the twin speaks as one author"
    assert all(s["rerank_score"] is not None for s in extra["sources"]), "the reranker server ranked"
    assert {"embed", "search", "rerank", "generate"} <= set(extra["timings_ms"])
    logged = RequestLogRepository(connect(rag_env)).get(extra["request_id"])
    assert logged.answer == reply.choices[0].message.content.strip()
    assert [s.chunk_id for s in logged.sources] == source_ids


def test_feedback_is_recorded_for_a_known_request_only(rag_server, rag_env):
    reply = ask_rag(rag_server.openai_url, "What does a registry alias tell the server?", max_tokens=16)
    url = f"{rag_server.url}/feedback"
    bearer = {"authorization": f"Bearer {FEEDBACK_TOKEN}"}
    anonymous = httpx.post(url, json={"request_id": reply["request_id"], "rating": 5})
    assert anonymous.status_code == 401, "the token from the Secret is required"
    good = httpx.post(
        url,
        json={"request_id": reply["request_id"], "rating": 2, "edited_answer": "Which version."},
        headers=bearer,
    )
    assert good.status_code == 201
    assert RequestLogRepository(connect(rag_env)).feedback_for(reply["request_id"])[0].rating == 2
    unknown = httpx.post(url, json={"request_id": "no-such-request", "rating": 5}, headers=bearer)
    assert unknown.status_code == 404 and "no-such-request" in unknown.json()["error"]
    out_of_range = httpx.post(url, json={"request_id": reply["request_id"], "rating": 9}, headers=bearer)
    assert out_of_range.status_code == 400 and "rating" in out_of_range.json()["error"]


def test_v2_clients_and_twinops_ask_get_the_same_kind_of_answer(rag_server, capsys):
    from kserve import InferenceRESTClient, InferInput, InferRequest
    from kserve.inference_client import RESTConfig

    from twinops.cli import main

    async def infer():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=300))
        question = InferInput("question", [1], "BYTES", ["What is a registry alias for?"])
        try:
            return await client.infer(
                rag_server.url, InferRequest("twin-rag", [question]), model_name="twin-rag"
            )
        finally:
            await client.close()

    import asyncio

    response = asyncio.run(infer())
    outputs = {output.name: output.data[0] for output in response.outputs}
    assert outputs["answer"] and outputs["request_id"]
    assert json.loads(outputs["sources"]), "V2 carries the sources as a JSON string"

    assert (
        main(["ask", "What is a registry alias for?", "--url", rag_server.openai_url, "--max-tokens", "12"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "sources:" in printed and "file://corpus/registry.md" in printed


def test_a_new_index_version_is_served_without_a_restart(rag_server, rag_env):
    # A feature run adds a document: the live collection's points change (the alias stays on the
    # same embedder's collection); the server serves a copy and must notice without a restart.
    chunks = [_chunk(k, a, t) for k, (a, t) in TEXTS.items()] + [_chunk("zebra", *LATE)]
    _index(rag_env, chunks)
    reply = ask_rag(rag_server.openai_url, "Why do zebras have stripes?", max_tokens=12)
    assert _chunk("zebra", *LATE).id in [s["chunk_id"] for s in reply["sources"]]
    assert "3 points" not in reply["model_versions"]["index"], "the served copy is the new version"


def test_bad_questions_are_4xx_and_the_server_keeps_answering(rag_server):
    empty = httpx.post(
        f"{rag_server.openai_url}/chat/completions",
        json={"model": "twin-rag", "messages": [{"role": "user", "content": "   "}]},
    )
    assert empty.status_code == 400 and "question" in empty.json()["error"]["message"]
    no_messages = httpx.post(f"{rag_server.openai_url}/chat/completions", json={"model": "twin-rag"})
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
    assert ask_rag(rag_server.openai_url, "What survived production?", max_tokens=8)["answer"]
