"""The twin with retrieval: one question in, an answer in the author's voice with its sources out.

``RagPipeline.answer`` runs these stages and reports each one's milliseconds in ``timings_ms``:

1. ``self_query``: the author, platform and category the question names become search filters (an
   explicit ``author_id`` wins). Platform and category filters are dropped again when nothing
   matches them, and so is an author the question only mentioned; an explicit author is kept.
2. ``expand``: ``expansions`` query variants: the normalised question (the chunks' own cleaning),
   a keyword-only variant, and with more than two, paraphrases from the generator
   (prompt ``rag-query-expansion``).
3. ``embed``: every variant in one batch; ``search``: the filtered nearest chunks per variant
   (an index built by another embedder than the loaded one is refused: one vector space);
   ``dedup``: one candidate per chunk id, with its best cosine score.
4. ``rerank``: the cross-encoder orders the candidates when a reranker is given (its score is kept
   on each source; cosine only otherwise, and the stage is absent).
5. The twin speaks as one author: the resolved one, else the author of the best candidate; the
   ``top_k`` best of that author's candidates become the numbered passages of the ``rag-answer``
   prompt, with the author's context from the Feast online store (``author_context``; a failure
   there means no context, logged, not a failed answer).
6. ``generate``; then the ``RagRequestRecord`` goes to the request log.

The pipeline is plain async code with its dependencies injected, so the RAG server, ``twinops
serve all`` and the tests wire it to servers or to in-process models alike.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from twinops.domain.documents import Category, Platform
from twinops.domain.serving import RagRequestRecord, SourceRef
from twinops.errors import ConfigError, NotFound, ServiceUnavailable, TwinopsError
from twinops.features.cleaning import normalize_query
from twinops.features.vector_store import ScoredChunk, collection_name
from twinops.infra.prompts import PromptTemplate, load_prompt
from twinops.serving.clients import Generator, Reranker
from twinops.serving.index import LiveIndex

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
RAG_PROMPT = "rag-answer"
EXPANSION_PROMPT = "rag-query-expansion"
STAGES = (
    "self_query",
    "expand",
    "embed",
    "search",
    "dedup",
    "rerank",
    "author_context",
    "prompt",
    "generate",
)

# Words that ask rather than say what the question is about (the general stop words come from
# scikit-learn): the keyword-only variant drops both.
_ASKING_WORDS = frozenset(
    """think thinks thought say says said write writes wrote written tell explain opinion opinions view
    views feel feels believe believes according ask asked answer do does did doing""".split()  # noqa: SIM905
)
_WORD = re.compile(r"[\w][\w+#.'-]*[\w+#]|\w")
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
# Conservative on purpose: a wrong filter hides the best chunks, a missed one costs little.
_PLATFORM_PATTERNS = {
    Platform.LINKEDIN: r"linked\s?in",
    Platform.SUBSTACK: r"substack",
    Platform.MEDIUM: r"(?:on|in|from)\s+medium|medium\s+(?:posts?|articles?|blog)",
    Platform.GIT: r"github|gitlab",
}
_CATEGORY_PATTERNS = {
    Category.ARTICLES: r"articles?|blog\s+posts?|essays?",
    Category.POSTS: r"posts?",
    Category.REPOSITORIES: r"repositor(?:y|ies)|repos?",
}
# A category word counts after a determiner ("in her articles", "the LinkedIn posts").
_DETERMINER = r"\b(?:her|his|their|your|my|the|an?|in|on|from)\s+(?:\w+\s+)?"


def load_serving_prompt(prompt_id: str = RAG_PROMPT) -> PromptTemplate:
    """A template of ``serving/prompts/`` (the prompt registry of the Inference side)."""
    return load_prompt(prompt_id, PROMPTS_DIR)


@cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _ASKING_WORDS


class Encoder(Protocol):
    """Embeds texts as unit vectors, like ``twinops.features.embedding.Embedder``."""

    def encode(self, texts: list[str], *, batch_size: int) -> np.ndarray: ...


class RequestLog(Protocol):
    """Where answers are recorded (``record`` may be sync or async)."""

    def record(self, record: RagRequestRecord) -> Any: ...


class QueryFilters(BaseModel):
    """What the self-query read from the question (or was told), as search filters."""

    model_config = ConfigDict(frozen=True)

    author_id: str | None = None
    author_name: str | None = None
    explicit_author: bool = Field(False, description="author_id came from the caller, not the question.")
    platform: Platform | None = None
    category: Category | None = None

    def search_filters(self) -> dict[str, str | None]:
        return {
            "author_id": self.author_id,
            "platform": self.platform.value if self.platform else None,
            "category": self.category.value if self.category else None,
        }

    def relaxations(self) -> Iterator[QueryFilters]:
        """These filters, then looser ones to try when nothing matches."""
        yield self
        loose = self
        if self.platform or self.category:
            loose = self.model_copy(update={"platform": None, "category": None})
            yield loose
        if self.author_id and not self.explicit_author:
            yield loose.model_copy(update={"author_id": None, "author_name": None})


class SelfQuery:
    """Reads the author, platform and category a question names.

    An author counts when the question names them in full, or by a part of their name (three
    letters or more, not a common word) that no other author shares. Two authors named at once
    leave the author open.
    """

    def __init__(self, authors: Sequence[tuple[str, str]]) -> None:
        self.authors = dict(authors)
        parts: dict[str, set[str]] = {}
        for author_id, name in self.authors.items():
            for part in name.split():
                if len(part) >= 3 and part.casefold() not in _stop_words():
                    parts.setdefault(part.casefold(), set()).add(author_id)
        self._patterns = [
            (author_id, re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE))
            for author_id, name in self.authors.items()
        ] + [
            (next(iter(owners)), re.compile(rf"\b{re.escape(part)}\b", re.IGNORECASE))
            for part, owners in parts.items()
            if len(owners) == 1
        ]
        self._platforms = [
            (p, re.compile(rf"\b(?:{rx})\b(?!-)", re.IGNORECASE)) for p, rx in _PLATFORM_PATTERNS.items()
        ]
        self._categories = [
            (c, re.compile(rf"{_DETERMINER}(?:{rx})\b(?!-)", re.IGNORECASE))
            for c, rx in _CATEGORY_PATTERNS.items()
        ]

    def __call__(self, question: str, *, author_id: str | None = None) -> QueryFilters:
        platforms = {platform for platform, pattern in self._platforms if pattern.search(question)}
        categories = [category for category, pattern in self._categories if pattern.search(question)]
        common = {
            "platform": next(iter(platforms)) if len(platforms) == 1 else None,
            "category": categories[0] if categories else None,
        }
        if author_id:
            return QueryFilters(
                author_id=author_id, author_name=self.authors.get(author_id), explicit_author=True, **common
            )
        named = {found for found, pattern in self._patterns if pattern.search(question)}
        if len(named) != 1:
            return QueryFilters(**common)
        found = named.pop()
        return QueryFilters(author_id=found, author_name=self.authors[found], **common)

    def words(self, filters: QueryFilters) -> set[str]:
        """The words of the resolved author's name: filters now, noise in a keyword query."""
        return {part.casefold() for part in (filters.author_name or "").split()}


def keyword_query(question: str, *, drop: set[str] = frozenset()) -> str:
    """The question's content words in order, without stop words, asking words and ``drop``."""
    seen: list[str] = []
    for word in _WORD.findall(question.casefold()):
        stem = word.removesuffix("'s")
        if stem not in _stop_words() and stem not in drop and stem not in seen:
            seen.append(stem)
    return " ".join(seen)


class RagAnswer(BaseModel):
    """The answer with what it was grounded on, how long each stage took and what served it."""

    request_id: str
    answer: str
    author_id: str | None = Field(None, description="The author the twin answered as.")
    author_name: str | None = None
    sources: list[SourceRef]
    queries: list[str] = Field(description="The query variants searched.")
    timings_ms: dict[str, float]
    prompt_id: str
    prompt_version: int
    prompt_hash: str
    models: dict[str, str]
    tokens: int
    llm_backend: str | None = Field(
        None, description="Which LLM backend answered behind a weighted router (stable/canary)."
    )


class _Timer:
    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_ms[name] = round((time.perf_counter() - start) * 1000, 3)


def _name(component: object) -> str:
    return str(getattr(component, "name", None) or type(component).__name__)


class RagPipeline:
    """Retrieval, reranking, prompt and generation for one question (see the module docstring)."""

    def __init__(
        self,
        *,
        embedder: Encoder,
        index: LiveIndex,
        generator: Generator,
        prompt: PromptTemplate | None = None,
        reranker: Reranker | None = None,
        author_context: Callable[[str], str | None] | None = None,
        authors: Sequence[tuple[str, str]] = (),
        request_log: RequestLog | None = None,
        expansion_prompt: PromptTemplate | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.generator = generator
        self.prompt = prompt or load_serving_prompt(RAG_PROMPT)
        self.expansion_prompt = expansion_prompt or load_serving_prompt(EXPANSION_PROMPT)
        self.reranker = reranker
        self.author_context = author_context
        self.self_query = SelfQuery(authors)
        self.request_log = request_log

    # --- stages -----------------------------------------------------------------------------------
    async def expand(self, question: str, filters: QueryFilters, expansions: int) -> list[str]:
        """Up to ``expansions`` distinct query variants, the normalised question first."""
        normalised = normalize_query(question) or question
        variants = [normalised]
        if expansions >= 2:
            variants.append(keyword_query(normalised, drop=self.self_query.words(filters)))
        if expansions > 2:
            variants += await self._paraphrases(normalised, expansions - 2)
        unique: dict[str, str] = {}
        for variant in variants:
            if variant.strip():
                unique.setdefault(variant.casefold().strip(), variant.strip())
        return list(unique.values())[:expansions]

    async def _paraphrases(self, question: str, count: int) -> list[str]:
        messages = self.expansion_prompt.messages({"question": question, "count": str(count)})
        try:
            text = (await self.generator.chat(messages, self.expansion_prompt.max_new_tokens, 0.0)).text
        except TwinopsError as error:  # expansion is optional: the answer stage reports a dead LLM
            log.warning("query expansion skipped: %s", error)
            return []
        lines = (_LIST_MARK.sub("", line).strip().strip("\"'") for line in text.splitlines())
        return [line for line in lines if len(line.split()) >= 2][:count]

    def _search(
        self, vectors: np.ndarray, filters: QueryFilters, limit: int
    ) -> tuple[list[list[ScoredChunk]], QueryFilters]:
        for attempt in filters.relaxations():
            hits = [self.index.search(vector, limit=limit, **attempt.search_filters()) for vector in vectors]
            if any(hits):
                if attempt != filters:
                    log.info("no chunks match %s; searched with %s", filters, attempt)
                return hits, attempt
        if filters.explicit_author:
            raise NotFound(
                f"the index {self.index.collection} has no chunks of author {filters.author_id!r}: "
                "run `twinops features` for them, or ask without an author"
            )
        raise NotFound(f"the index {self.index.collection} has no chunks: run `twinops features` first")

    def check_vector_space(self) -> None:
        """The index must be the one this embedder built (collections are named by embedder)."""
        slug, version = getattr(self.embedder, "slug", None), getattr(self.embedder, "version", None)
        collection = self.index.collection
        if slug and version and collection and collection != collection_name(self.index.alias, slug, version):
            raise ServiceUnavailable(
                f"the index {collection} was built by another embedder than the one loaded here "
                f"({getattr(self.embedder, 'model_id', slug)} {version}): restart the RAG server with the "
                "index's embedder",
                setting="TWINOPS_EMBEDDING_MODEL",
            )

    @staticmethod
    def dedup(hits: list[list[ScoredChunk]], limit: int) -> list[ScoredChunk]:
        """One hit per chunk id (its best score), best first, at most ``limit``."""
        best: dict[str, ScoredChunk] = {}
        for hit in (hit for per_query in hits for hit in per_query):
            if hit.chunk_id not in best or hit.score > best[hit.chunk_id].score:
                best[hit.chunk_id] = hit
        return sorted(best.values(), key=lambda hit: -hit.score)[:limit]

    async def _rerank(
        self, question: str, candidates: list[ScoredChunk]
    ) -> list[tuple[ScoredChunk, float | None]]:
        ranked = await self.reranker.rerank(question, [c.content for c in candidates], len(candidates))
        if not ranked:
            log.warning(
                "the reranker %s ranked none of %d candidates; using cosine order",
                _name(self.reranker),
                len(candidates),
            )
            return [(hit, None) for hit in candidates]
        return [(candidates[index], score) for index, score in ranked]

    async def _author_context(self, author_id: str, timer: _Timer) -> str:
        if self.author_context is None:
            return ""
        with timer.stage("author_context"):
            try:
                return await asyncio.to_thread(self.author_context, author_id) or ""
            except Exception as error:  # Feast's failures vary by store; the answer goes on without
                log.warning("no author context for %s (%s: %s)", author_id, type(error).__name__, error)
                return ""

    async def _record(self, record: RagRequestRecord) -> None:
        if self.request_log is None:
            return
        try:
            if inspect.iscoroutinefunction(self.request_log.record):
                await self.request_log.record(record)
            else:
                await asyncio.to_thread(self.request_log.record, record)
        except Exception:  # the user still gets the answer; the log says what went missing
            log.exception("request %s was not written to the request log", record.request_id)

    def models(self) -> dict[str, str]:
        """What serves each role, for the request log."""
        embedder = self.embedder
        identity = [getattr(embedder, "model_id", None), getattr(embedder, "version", None)]
        models = {
            "embedder": " ".join(str(part) for part in identity if part) or _name(embedder),
            "index": str(self.index.version or self.index.collection),
            "llm": _name(self.generator),
        }
        if self.reranker is not None:
            models["reranker"] = _name(self.reranker)
        return models

    # --- the whole request ------------------------------------------------------------------------
    async def answer(
        self,
        question: str,
        *,
        author_id: str | None = None,
        top_k: int = 4,
        candidates: int = 12,
        expansions: int = 2,
        max_tokens: int | None = None,
        temperature: float = 0.2,
        request_id: str | None = None,
    ) -> RagAnswer:
        """Answer ``question`` as its author, grounded on retrieved passages (see the module docstring)."""
        question = (question or "").strip()
        if not question:
            raise ConfigError("the question is empty: ask something")
        if top_k < 1 or candidates < top_k or expansions < 1:
            raise ConfigError(
                f"top_k={top_k}, candidates={candidates}, expansions={expansions}: need "
                "1 <= top_k <= candidates and expansions >= 1"
            )
        timer = _Timer()
        started = time.perf_counter()
        with timer.stage("self_query"):
            filters = self.self_query(question, author_id=author_id)
        # The Feast lookup runs while retrieval does, once the author is known.
        context_task = (
            asyncio.create_task(self._author_context(filters.author_id, timer)) if filters.author_id else None
        )
        try:
            with timer.stage("expand"):
                queries = await self.expand(question, filters, expansions)
            with timer.stage("embed"):
                vectors = await asyncio.to_thread(self.embedder.encode, queries, batch_size=len(queries))
            with timer.stage("search"):
                hits, filters = await asyncio.to_thread(self._search, vectors, filters, candidates)
                self.check_vector_space()
            with timer.stage("dedup"):
                pool = self.dedup(hits, candidates)
            if self.reranker is not None:
                with timer.stage("rerank"):
                    ranked = await self._rerank(question, pool)
            else:
                ranked = [(hit, None) for hit in pool]
            voice = filters.author_id or ranked[0][0].author_id
            chosen = [(hit, score) for hit, score in ranked if hit.author_id == voice][:top_k]
            author_name = filters.author_name or chosen[0][0].author_name
            if context_task is None or voice != filters.author_id:
                if context_task is not None:
                    context_task.cancel()
                context_task = asyncio.create_task(self._author_context(voice, timer))
            author_context = await context_task
        finally:
            if context_task is not None and not context_task.done():
                context_task.cancel()
        with timer.stage("prompt"):
            passages = "\n\n".join(f"[{n}] {hit.content}" for n, (hit, _) in enumerate(chosen, 1))
            messages = self.prompt.messages(
                {
                    "author_name": author_name,
                    "author_context": author_context,
                    "context": passages,
                    "question": question,
                }
            )
        with timer.stage("generate"):
            text, tokens, llm_backend = await self.generator.chat(
                messages, max_tokens or self.prompt.max_new_tokens, temperature
            )
        timer.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
        sources = [
            SourceRef(
                chunk_id=hit.chunk_id,
                document_id=hit.document_id,
                source_url=hit.source_url,
                score=hit.score,
                rerank_score=score,
            )
            for hit, score in chosen
        ]
        answer = RagAnswer(
            request_id=request_id or str(uuid.uuid4()),
            answer=text.strip(),
            author_id=voice,
            author_name=author_name,
            sources=sources,
            queries=queries,
            timings_ms=timer.timings_ms,
            prompt_id=self.prompt.id,
            prompt_version=self.prompt.version,
            prompt_hash=self.prompt.content_hash,
            models=self.models(),
            tokens=tokens,
            llm_backend=llm_backend,
        )
        await self._record(
            RagRequestRecord(
                request_id=answer.request_id,
                question=question,
                author_id=voice,
                answer=answer.answer,
                prompt_id=answer.prompt_id,
                prompt_version=answer.prompt_version,
                prompt_hash=answer.prompt_hash,
                models=answer.models,
                sources=tuple(sources),
                timings_ms=answer.timings_ms,
                tokens_generated=tokens,
            )
        )
        return answer
