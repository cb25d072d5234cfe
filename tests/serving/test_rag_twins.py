# ruff: noqa: F811 - the imported fixtures are requested by name, which ruff reads as redefinitions
"""RAG with a twin per author: the request names a twin, retrieval reads that author's chunks only
(Qdrant's payload filter, in a real local Qdrant folder with the bundled MiniLM), and the answer
comes from that author's twin."""

from __future__ import annotations

import asyncio

import pytest
from tests.serving.test_rag_pipeline import (  # noqa: F401 - the module's index fixtures
    ADA,
    GRACE,
    KEY_OF_TEXT,
    PASSAGES,
    FakeGenerator,
    FakeReranker,
    _keys,
    _pipeline,
    embedder,
    index,
)

from twinops.domain.twins import twin_model_name
from twinops.errors import ConfigError

pytestmark = pytest.mark.slow  # embeds the planted chunks with the bundled MiniLM

# Both authors wrote about cosine similarity in vector databases: unfiltered, both compete.
QUESTION = "What does Ada say about cosine similarity in vector databases?"


class TwinGenerator(FakeGenerator):
    def __init__(self, twin: str) -> None:
        super().__init__()
        self.name = twin


def _twins_pipeline(embedder, index, reranker):
    made: dict[str, TwinGenerator] = {}

    def twin_generator(author_name: str) -> TwinGenerator:
        return made.setdefault(author_name, TwinGenerator(twin_model_name(author_name)))

    return _pipeline(embedder, index, reranker=reranker, twin_generator=twin_generator), made


def test_rag_for_one_twin_never_reads_another_authors_chunks(embedder, index) -> None:
    reranker = FakeReranker(favourite="cosine")
    pipeline, made = _twins_pipeline(embedder, index, reranker)
    grace = twin_model_name(GRACE.full_name)

    # The question names Ada, the request names Grace's twin: the twin wins, and every candidate
    # the search returned (what the reranker saw) is Grace's.
    answer = asyncio.run(pipeline.answer(QUESTION, twin=grace))
    assert {KEY_OF_TEXT[text] for text in reranker.documents} == {
        k for k in PASSAGES if k.startswith("grace-")
    }
    assert all(key.startswith("grace-") for key in _keys(answer)) and answer.author_id == GRACE.id
    assert answer.models["llm"] == grace and list(made) == [GRACE.full_name]
    assert "You are Grace Hopper" in made[GRACE.full_name].calls[-1][0]["content"]

    # Named by author id, the author's own twin answers.
    answer = asyncio.run(pipeline.answer(QUESTION, author_id=ADA.id))
    assert all(key.startswith("ada-") for key in _keys(answer))
    assert answer.models["llm"] == twin_model_name(ADA.full_name) == "twin-llm-ada-lovelace"


def test_an_unknown_twin_or_a_twin_of_another_author_is_one_line(embedder, index) -> None:
    pipeline, made = _twins_pipeline(embedder, index, FakeReranker(favourite="cosine"))
    with pytest.raises(
        ConfigError, match="there is no twin 'twin-llm-nobody' here: name one of twin-llm-ada"
    ):
        asyncio.run(pipeline.answer(QUESTION, twin="twin-llm-nobody"))
    with pytest.raises(ConfigError, match="is not the author of twin-llm-grace-hopper"):
        asyncio.run(pipeline.answer(QUESTION, twin="twin-llm-grace-hopper", author_id=ADA.id))
    assert not made  # nothing was generated
