"""The RAG pipeline over a real index: the bundled MiniLM embeds planted chunks of two authors into
a real local Qdrant folder, and ``LiveIndex`` serves them.

The generator and the reranker are in-process fakes here (a scripted chat reply, a reranker with a
known order) so that what the pipeline does with their output is checkable; the real LLM and
reranker servers, and the HTTP clients against them, are tested with the servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from twinops.domain import Author, Category, Platform
from twinops.domain.documents import Chunk
from twinops.domain.serving import RagRequestRecord
from twinops.errors import ConfigError, NotFound, ServiceUnavailable
from twinops.features.embedding import Embedder, embed_chunks, open_embedder
from twinops.features.vector_store import VectorStore
from twinops.infra.qdrant import open_qdrant
from twinops.serving.clients import ChatReply
from twinops.serving.index import LiveIndex
from twinops.serving.rag_pipeline import (
    RAG_PROMPT,
    STAGES,
    RagPipeline,
    SelfQuery,
    keyword_query,
    load_serving_prompt,
)
from twinops.settings import Settings

ADA = Author(full_name="Ada Lovelace")
GRACE = Author(full_name="Grace Hopper")
AUTHORS = [(ADA.id, ADA.full_name), (GRACE.id, GRACE.full_name)]

COSINE = (
    "Vector databases index embeddings so that retrieval finds passages by meaning. I always pick "
    "cosine similarity as the distance metric, because it ignores vector length."
)
PASSAGES = {
    "ada-cosine": (ADA, COSINE, Platform.MEDIUM, Category.ARTICLES),
    "ada-kafka": (
        ADA,
        "Kafka consumers track offsets per partition; a rebalance moves partitions between members.",
        Platform.MEDIUM,
        Category.ARTICLES,
    ),
    "ada-checkpointing": (
        ADA,
        "Gradient checkpointing recomputes activations in the backward pass to save accelerator memory.",
        Platform.SUBSTACK,
        Category.ARTICLES,
    ),
    "ada-linkedin": (
        ADA,
        "Short note: my favourite debugging tool is still printing the tensor shapes at every layer.",
        Platform.LINKEDIN,
        Category.POSTS,
    ),
    "grace-vectors": (
        GRACE,
        "Embedding search in a vector database: cosine similarity between the query vector and each "
        "passage vector decides what retrieval returns.",
        Platform.MEDIUM,
        Category.ARTICLES,
    ),
    "grace-rust": (
        GRACE,
        "Rust's borrow checker turns aliasing bugs into compile errors: a mutable reference is exclusive.",
        Platform.MEDIUM,
        Category.ARTICLES,
    ),
    "grace-operators": (
        GRACE,
        "Kubernetes operators encode an operator's knowledge into a controller loop that reconciles state.",
        Platform.LINKEDIN,
        Category.POSTS,
    ),
}


def _chunk(key: str) -> Chunk:
    author, text, platform, category = PASSAGES[key]
    return Chunk(
        document_id=f"doc-{key}",
        author_id=author.id,
        author_name=author.full_name,
        platform=platform,
        category=category,
        source_url=f"https://example.com/{key}",
        chunk_index=0,
        content=text,
        token_count=len(text.split()),
        document_content_hash=f"hash-{key}",
    )


CHUNK_IDS = {key: _chunk(key).id for key in PASSAGES}
KEY_OF = {chunk_id: key for key, chunk_id in CHUNK_IDS.items()}
KEY_OF_TEXT = {text: key for key, (_, text, _, _) in PASSAGES.items()}


class FakeGenerator:
    """A scripted chat model: paraphrases for the expansion prompt, a citing answer otherwise."""

    name = "fake-llm"

    def __init__(self, *, fail_expansion: bool = False) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self.fail_expansion = fail_expansion

    async def chat(self, messages, max_tokens, temperature):
        self.calls.append(messages)
        if "rewrite" in messages[0]["content"]:
            if self.fail_expansion:
                raise ServiceUnavailable("the LLM server at http://x/openai/v1 is unreachable")
            return ChatReply(
                "1. Which distance metric should a vector store use?\n2. Why cosine for embeddings?", 20
            )
        return ChatReply("I pick cosine similarity [1].", 7)


class FakeReranker:
    """Puts the passages containing ``favourite`` first, then the rest in reverse input order."""

    name = "fake-reranker"

    def __init__(self, favourite: str) -> None:
        self.favourite = favourite
        self.documents: list[str] = []

    async def rerank(self, query: str, documents: Sequence[str], top_n: int) -> list[tuple[int, float]]:
        self.documents = list(documents)
        scores = [
            (index, 10.0 if self.favourite in text else -float(len(documents) - index))
            for index, text in enumerate(documents)
        ]
        return sorted(scores, key=lambda pair: -pair[1])[:top_n]


class ListLog:
    def __init__(self) -> None:
        self.records: list[RagRequestRecord] = []

    def record(self, record: RagRequestRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def embedder(bundled_models_dir: Path) -> Embedder:
    return open_embedder(Settings(embedding_model=str(bundled_models_dir / "all-minilm-l6-v2")))


@pytest.fixture(scope="module")
def index(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> LiveIndex:
    """The planted chunks in a local Qdrant folder, as `twinops features` leaves them."""
    settings = Settings(home=tmp_path_factory.mktemp("rag-home"))
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        target = store.prepare(
            embedder.slug, embedder.version, embedder.dimension, embedder=embedder.model_id
        )
        store.upsert_chunks(
            target.chunks, embed_chunks(embedder, [_chunk(k) for k in PASSAGES], batch_size=8)
        )
        store.switch_aliases(target)
    return LiveIndex(settings)


def _pipeline(embedder, index, **overrides) -> RagPipeline:
    options = {
        "embedder": embedder,
        "index": index,
        "generator": FakeGenerator(),
        "authors": AUTHORS,
        "author_context": lambda author_id: f"CONTEXT-OF-{author_id}",
        "request_log": ListLog(),
    }
    return RagPipeline(**(options | overrides))


def _keys(answer) -> list[str]:
    return [KEY_OF[source.chunk_id] for source in answer.sources]


@pytest.mark.slow
def test_the_named_authors_passages_ground_the_answer(embedder, index) -> None:
    pipeline = _pipeline(embedder, index)
    answer = asyncio.run(pipeline.answer("What does Ada think about cosine similarity in vector databases?"))

    assert _keys(answer)[0] == "ada-cosine"
    assert all(key.startswith("ada-") for key in _keys(answer)) and len(answer.sources) == 4
    assert answer.author_id == ADA.id and answer.author_name == "Ada Lovelace"
    assert answer.answer == "I pick cosine similarity [1]." and answer.tokens == 7
    # The prompt: the author's voice and Feast context, the passages numbered in source order.
    system, user = pipeline.generator.calls[-1][0]["content"], pipeline.generator.calls[-1][-1]["content"]
    assert "You are Ada Lovelace" in system and f"CONTEXT-OF-{ADA.id}" in system
    assert user.index(f"[1] {COSINE}") < user.index("[2] ") and "Question: What does Ada think" in user
    assert set(answer.timings_ms) == {*STAGES, "total"} - {"rerank"}
    assert all(ms >= 0 for ms in answer.timings_ms.values())
    assert answer.models["llm"] == "fake-llm" and answer.models["index"] == str(index.version)
    assert answer.models["embedder"].startswith(embedder.model_id)

    [record] = pipeline.request_log.records
    prompt = load_serving_prompt(RAG_PROMPT)
    assert record.request_id == answer.request_id and record.author_id == ADA.id
    assert (record.prompt_id, record.prompt_version, record.prompt_hash) == (
        prompt.id,
        prompt.version,
        prompt.content_hash,
    )
    assert list(record.sources) == answer.sources and record.timings_ms == answer.timings_ms
    assert record.question.startswith("What does Ada") and record.tokens_generated == 7


@pytest.mark.slow
def test_the_author_filter_keeps_other_authors_out_of_the_candidates(embedder, index) -> None:
    reranker = FakeReranker(favourite="cosine")
    pipeline = _pipeline(embedder, index, reranker=reranker)
    question = "What about cosine similarity in vector databases?"

    asyncio.run(pipeline.answer(question))
    assert PASSAGES["grace-vectors"][1] in reranker.documents  # nobody named: both authors compete

    asyncio.run(pipeline.answer(f"What does Ada Lovelace say about {question[11:]}"))
    assert PASSAGES["grace-vectors"][1] not in reranker.documents
    assert {KEY_OF_TEXT[text] for text in reranker.documents} == {k for k in PASSAGES if k.startswith("ada-")}

    # An explicit author id wins over the name in the question.
    answer = asyncio.run(pipeline.answer("What does Ada say about vector databases?", author_id=GRACE.id))
    assert answer.author_id == GRACE.id and all(key.startswith("grace-") for key in _keys(answer))
    assert pipeline.request_log.records[-1].author_id == GRACE.id


@pytest.mark.slow
def test_candidates_are_deduplicated_and_reranked(embedder, index) -> None:
    reranker = FakeReranker(favourite="checkpointing")
    pipeline = _pipeline(embedder, index, reranker=reranker)
    answer = asyncio.run(pipeline.answer("What does Ada think about vector databases?", expansions=2))

    assert len(answer.queries) == 2  # two variants, each returning every Ada chunk ...
    assert len(reranker.documents) == len(set(reranker.documents)) == 4  # ... reranked once each
    # The reranker's order, not the cosine order: its favourite first, then the rest reversed.
    first_stage = [KEY_OF_TEXT[text] for text in reranker.documents]
    rest = [key for key in first_stage if key != "ada-checkpointing"]
    assert _keys(answer) == ["ada-checkpointing", *rest[::-1]]
    assert answer.sources[0].rerank_score == 10.0
    assert [s.score for s in answer.sources] != sorted((s.score for s in answer.sources), reverse=True)
    assert "rerank" in answer.timings_ms and answer.models["reranker"] == "fake-reranker"


@pytest.mark.slow
def test_self_query_platform_and_category_narrow_the_search(embedder, index) -> None:
    pipeline = _pipeline(embedder, index)
    answer = asyncio.run(pipeline.answer("In her LinkedIn posts, what does Ada say about debugging?"))
    assert _keys(answer) == ["ada-linkedin"]
    # A filter that matches nothing is dropped rather than answering from nothing.
    answer = asyncio.run(pipeline.answer("What does Ada say in her GitHub repositories about Kafka?"))
    assert _keys(answer)[0] == "ada-kafka"


@pytest.mark.slow
def test_expansion_adds_llm_paraphrases_and_survives_without_them(embedder, index) -> None:
    pipeline = _pipeline(embedder, index)
    answer = asyncio.run(pipeline.answer("Which metric does Ada use for vector search?", expansions=4))
    assert len(answer.queries) == 4 and "Why cosine for embeddings?" in answer.queries
    assert _keys(answer)[0] == "ada-cosine"

    failing = _pipeline(embedder, index, generator=FakeGenerator(fail_expansion=True))
    answer = asyncio.run(failing.answer("Which metric does Ada use for vector search?", expansions=4))
    assert len(answer.queries) == 2 and answer.answer


@pytest.mark.slow
def test_a_failing_feature_store_means_no_context(embedder, index) -> None:
    def broken(author_id: str) -> str:
        raise RuntimeError("online store is gone")

    pipeline = _pipeline(embedder, index, author_context=broken)
    answer = asyncio.run(pipeline.answer("What does Grace think about Rust?"))
    assert _keys(answer)[0] == "grace-rust"
    assert "CONTEXT-OF" not in pipeline.generator.calls[-1][0]["content"]


@pytest.mark.slow
def test_bad_questions_and_an_empty_index_are_one_line_errors(embedder, index, settings) -> None:
    pipeline = _pipeline(embedder, index)
    for question in ("", "   "):
        with pytest.raises(ConfigError, match="question is empty"):
            asyncio.run(pipeline.answer(question))
    with pytest.raises(ConfigError, match="top_k"):
        asyncio.run(pipeline.answer("Kafka?", top_k=5, candidates=2))
    with pytest.raises(NotFound, match="no chunks of author 'nobody'"):
        asyncio.run(pipeline.answer("Kafka?", author_id="nobody"))

    stale = _pipeline(dataclasses.replace(embedder, version="older"), index)
    with pytest.raises(ServiceUnavailable, match="built by another embedder"):
        asyncio.run(stale.answer("What does Ada think about Kafka?"))

    empty = _pipeline(embedder, LiveIndex(settings))
    with pytest.raises(NotFound, match="run `twinops features` first"):
        asyncio.run(empty.answer("What does Ada think about Kafka?"))
    assert empty.request_log.records == []


def test_self_query_reads_names_platforms_and_categories() -> None:
    read = SelfQuery([*AUTHORS, ("grace-kelly", "Grace Kelly")])
    assert read("what does ada think about kafka?").author_id == ADA.id
    assert read("What did Hopper's team ship?").author_id == GRACE.id
    assert read("What did Grace write?").author_id is None  # two Graces: ambiguous
    assert read("Compare Ada Lovelace and Grace Hopper").author_id is None
    filters = read("In her LinkedIn posts, what does Ada Lovelace say about Rust?")
    assert (filters.platform, filters.category) == (Platform.LINKEDIN, Category.POSTS)
    loose_words = read("Running on medium-sized hardware, on a post-it note")
    assert (loose_words.platform, loose_words.category) == (None, None)
    explicit = read("What does Ada think?", author_id=GRACE.id)
    assert explicit.author_id == GRACE.id and explicit.explicit_author


def test_keyword_query_keeps_the_subject() -> None:
    assert keyword_query("What does Ada think about cosine similarity?", drop={"ada"}) == "cosine similarity"
    assert (
        keyword_query("Why do you prefer C++ over Rust's borrow checker?") == "prefer c++ rust borrow checker"
    )


def test_the_rag_prompt_is_a_versioned_template() -> None:
    prompt = load_serving_prompt()
    assert (prompt.id, prompt.version) == ("rag-answer", 1)
    assert set(prompt.variables) == {"author_name", "author_context", "context", "question"}
    messages = prompt.messages(
        {"author_name": "Ada", "author_context": "", "context": "[1] x", "question": "q"}
    )
    assert "[1], [2]" in messages[0]["content"] and messages[-1]["content"].endswith("Question: q")
