"""Retrieval queries and reranker rows: each query with the top-k list Qdrant returns for it.

Queries per chunk: the generator's back-translated instruction, plus up to ``probes`` keyword
probes, one per sentence of the chunk (its content words: what a person types into a search box).
Each query's relevant chunk is the one it came from; every other candidate counts as wrong,
same-document siblings included, in training exactly as in evaluation.

A row (contract 4 plus ``candidates`` and ``document_id``): ``query``, ``positive`` (the chunk's
text), ``negatives`` (the best-ranked wrong candidates), ``chunk_id``, and ``candidates``: the
top ``candidates`` chunks for the query, ``{chunk_id, content}`` in cosine order, as serving's RAG
would rerank them. Queries of training documents never see golden documents' chunks (they are
filtered out of their lists), so no golden text reaches training.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from twinops.datasets.budget import ProgressMeter
from twinops.datasets.corpus import RUN_FEATURES_FIRST
from twinops.datasets.text import sentences, stop_words, words
from twinops.domain.progress import ProgressCallback
from twinops.errors import NotFound
from twinops.features.vector_store import CHUNKS_ALIAS

# Extra hits fetched so that dropping golden documents still leaves a full list.
_SEARCH_HEADROOM = 12
PROBE_WORDS = 8
MIN_PROBE_WORDS = 4


@dataclass(frozen=True)
class RetrievalQuery:
    """A query and the chunk that answers it."""

    text: str
    chunk_id: str
    document_id: str
    origin: str  # "instruction" (back-translated), "paraphrase" (a person's question) or "probe"


@dataclass(frozen=True)
class RerankerPair:
    query: str
    positive: str
    negatives: tuple[str, ...]
    chunk_id: str
    document_id: str
    candidates: tuple[tuple[str, str], ...] = ()

    def to_row(self) -> dict:
        """Contract 4 (query, positive, negatives, chunk_id) plus document_id and candidates."""
        return {
            "query": self.query,
            "positive": self.positive,
            "negatives": list(self.negatives),
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "candidates": [{"chunk_id": cid, "content": content} for cid, content in self.candidates],
        }


def probe_queries(text: str, count: int) -> list[str]:
    """Up to ``count`` keyword probes of ``text``: the content words of its sentences, drawn reproducibly."""
    if count <= 0:
        return []
    stop = stop_words()
    probes: list[str] = []
    for sentence in sentences(text.replace("#", " ")):
        content = [word for word in words(sentence) if word not in stop and not word.isdigit()]
        if len(content) >= MIN_PROBE_WORDS:
            probe = " ".join(content[:PROBE_WORDS])
            if probe not in probes:
                probes.append(probe)
    random.Random(text).shuffle(probes)  # noqa: S311 - a reproducible draw, not a secret
    return probes[:count]


def retrieval_queries(
    instructions: Sequence[tuple[str, str, str, str]], chunks: Sequence[tuple[str, str, str]], probes: int
) -> list[RetrievalQuery]:
    """Instructions ``(text, chunk_id, document_id, origin)`` and ``probes`` keyword probes per chunk
    ``(chunk_id, document_id, content)``. An instruction's origin is ``passage`` (back-generated,
    recorded as ``instruction``) or ``paraphrase`` (a question a person wrote)."""
    queries = [
        RetrievalQuery(text, chunk_id, document_id, "instruction" if origin == "passage" else origin)
        for text, chunk_id, document_id, origin in instructions
    ]
    for chunk_id, document_id, content in chunks:
        queries += [
            RetrievalQuery(probe, chunk_id, document_id, "probe") for probe in probe_queries(content, probes)
        ]
    return queries


def _normalize_query(text: str) -> str:
    # Queries must be normalized exactly as the feature side normalizes them (contract 3).
    from twinops.features.cleaning import normalize_query

    return normalize_query(text) or text


def mine_reranker_pairs(
    queries: Sequence[RetrievalQuery],
    chunk_texts: dict[str, str],
    golden_documents: set[str],
    client,
    embedder,
    *,
    author_id: str | None,
    candidates: int,
    hard_negatives: int,
    drops: Counter[str],
    on_progress: ProgressCallback | None = None,
) -> list[RerankerPair]:
    """One row per query whose list has at least one wrong candidate."""
    from qdrant_client import models

    if not client.collection_exists(CHUNKS_ALIAS):
        raise NotFound(
            f"the Qdrant chunk collection alias {CHUNKS_ALIAS!r} does not exist: {RUN_FEATURES_FIRST}"
        )
    if not queries:
        return []
    vectors = embedder.encode(
        [_normalize_query(query.text) for query in queries],
        normalize_embeddings=True,
        batch_size=32,
        show_progress_bar=False,
    )
    query_filter = (
        models.Filter(must=[models.FieldCondition(key="author_id", match=models.MatchValue(value=author_id))])
        if author_id
        else None
    )
    pairs = []
    meter = ProgressMeter("reranker pairs", len(queries), on_progress)
    for query, vector in zip(queries, vectors, strict=True):
        hits = client.query_points(
            CHUNKS_ALIAS,
            query=[float(value) for value in vector],
            limit=candidates + _SEARCH_HEADROOM,
            query_filter=query_filter,
            with_payload=True,
        ).points
        in_training = query.document_id not in golden_documents
        listed: list[tuple[str, str]] = []
        for hit in hits:
            payload = hit.payload or {}
            if in_training and payload.get("document_id") in golden_documents:
                continue
            chunk_id = str(payload.get("chunk_id", hit.id))
            text = payload.get("content") or chunk_texts.get(chunk_id, "")
            if text:
                listed.append((chunk_id, text))
            if len(listed) == candidates:
                break
        negatives = [text for chunk_id, text in listed if chunk_id != query.chunk_id][:hard_negatives]
        if not negatives:
            drops["reranker:no_hard_negatives"] += 1
            meter.advance(dropped=1)
            continue
        meter.advance(made=1)
        pairs.append(
            RerankerPair(
                query.text,
                chunk_texts[query.chunk_id],
                tuple(negatives),
                query.chunk_id,
                query.document_id,
                tuple(listed),
            )
        )
    return pairs
