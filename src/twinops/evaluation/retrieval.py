"""Retrieval of the golden questions against Qdrant (alias ``twin_chunks``): cosine order and rerankers.

Per question: the ``candidates`` nearest chunks Qdrant returns for the normalized question (the
list serving's RAG reranks), then each ranker's order of that same list. A golden row's
``chunk_id`` is the one relevant chunk (same-document siblings count as wrong, as in training).
Per ranker: ``golden_hit_at_{k}`` and ``golden_mrr`` with per-question values (for intervals and
paired comparisons); ``cosine`` is the first-stage order itself, the baseline every reranker must beat.
The same two on the paraphrased rows alone (``golden_paraphrased_hit_at_{k}``,
``golden_paraphrased_mrr``: questions in the asker's words, where term overlap cannot carry a
ranker), absent when the golden set has none.
"""

from __future__ import annotations

from collections.abc import Callable

from twinops.domain.stats import hit_and_reciprocal_rank
from twinops.evaluation.data import GoldenRow
from twinops.evaluation.job import ModelScores
from twinops.features.vector_store import CHUNKS_ALIAS
from twinops.settings import Settings

COSINE = "cosine"
PARAPHRASED_PREFIX = "golden_paraphrased_"

Hits = list[list[tuple[str, str]]]


def _normalize(text: str) -> str:
    from twinops.features.cleaning import normalize_query  # the chunks' own cleaning

    return normalize_query(text) or text


def _alias_exists(client, alias: str) -> bool:
    return any(item.alias_name == alias for item in client.get_aliases().aliases) or client.collection_exists(
        alias
    )


def search_candidates(
    settings: Settings, rows: list[GoldenRow], *, limit: int, author_id: str | None = None
) -> Hits | None:
    """Per question, ``limit`` hits as (chunk_id, content) in cosine order; None without a collection."""
    from qdrant_client import models

    from twinops.infra.qdrant import open_qdrant
    from twinops.models.loaders import load_embedder

    embedder = load_embedder(settings)
    vectors = embedder.encode([_normalize(row.instruction) for row in rows], normalize_embeddings=True)
    query_filter = (
        models.Filter(must=[models.FieldCondition(key="author_id", match=models.MatchValue(value=author_id))])
        if author_id
        else None
    )
    with open_qdrant(settings) as client:
        if not _alias_exists(client, CHUNKS_ALIAS):
            return None
        results = []
        for vector in vectors:
            response = client.query_points(
                CHUNKS_ALIAS,
                query=[float(x) for x in vector],
                query_filter=query_filter,
                limit=limit,
                with_payload=True,
            )
            results.append(
                [
                    (str((p.payload or {}).get("chunk_id", p.id)), str((p.payload or {}).get("content", "")))
                    for p in response.points
                ]
            )
    return results


def ranker_scores(
    name: str,
    path: str,
    rows: list[GoldenRow],
    hits: Hits,
    order: Callable[[str, list[tuple[str, str]]], list[tuple[str, str]]],
    *,
    k: int,
) -> ModelScores:
    """hit@k and MRR of ``order`` applied to each question's list, with intervals."""
    from twinops.domain.stats import interval, value

    pairs = [
        hit_and_reciprocal_rank([cid for cid, _ in order(row.instruction, listed)], row.chunk_id, k)
        for row, listed in zip(rows, hits, strict=True)
    ]
    per_question = {f"golden_hit_at_{k}": [p[0] for p in pairs], "golden_mrr": [p[1] for p in pairs]}
    paraphrased = [pair for pair, row in zip(pairs, rows, strict=True) if row.paraphrased]
    if paraphrased:
        per_question[f"{PARAPHRASED_PREFIX}hit_at_{k}"] = [p[0] for p in paraphrased]
        per_question[f"{PARAPHRASED_PREFIX}mrr"] = [p[1] for p in paraphrased]
    return ModelScores(
        name=name,
        path=path,
        metrics={metric: value(metric, values) for metric, values in per_question.items()},
        intervals={metric: interval(metric, values) for metric, values in per_question.items()},
        per_question=per_question,
    )


def rerank_order(reranker) -> Callable[[str, list[tuple[str, str]]], list[tuple[str, str]]]:
    """The order ``reranker.score`` gives a list (ties keep the first-stage order)."""

    def order(question: str, listed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        scores = reranker.score(question, [content for _, content in listed])
        ranked = sorted(range(len(listed)), key=lambda index: (-scores[index], index))
        return [listed[index] for index in ranked]

    return order


def retrieval_scores(
    settings: Settings,
    rows: list[GoldenRow],
    rerankers: dict[str, str],
    *,
    k: int = 5,
    candidates: int = 12,
    author_id: str | None = None,
    device: str = "auto",
) -> list[ModelScores] | None:
    """``cosine`` and each named reranker (folder) on the same lists; None without Qdrant data."""
    import time

    from twinops.models.rerank import load_reranker

    rows = [row for row in rows if row.chunk_id]
    if not rows:
        return None
    started = time.perf_counter()
    hits = search_candidates(settings, rows, limit=max(k, candidates), author_id=author_id)
    if hits is None:
        return None
    cosine = ranker_scores(COSINE, "qdrant", rows, hits, lambda _, listed: listed, k=k)
    cosine.seconds = time.perf_counter() - started
    scored = [cosine]
    for name, path in rerankers.items():
        started = time.perf_counter()
        ranker = ranker_scores(name, path, rows, hits, rerank_order(load_reranker(path, device=device)), k=k)
        ranker.seconds = time.perf_counter() - started
        scored.append(ranker)
    return scored
