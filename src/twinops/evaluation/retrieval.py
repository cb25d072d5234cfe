"""hit@k and MRR of the golden questions against Qdrant (alias ``twin_chunks``), with and without
the cross-encoder reranker. A golden row's ``chunk_id`` is the one relevant chunk."""

from __future__ import annotations

from twinops.evaluation.data import GoldenRow
from twinops.evaluation.metrics import hit_and_reciprocal_rank, mean
from twinops.settings import Settings

CHUNKS_ALIAS = "twin_chunks"


def _normalize(text: str) -> str:
    try:  # the features' query normalizer puts questions in the chunks' text space
        from twinops.features.cleaning import normalize_query
    except ImportError:
        return " ".join(text.split())
    return normalize_query(text) or text


def _alias_exists(client, alias: str) -> bool:
    return any(item.alias_name == alias for item in client.get_aliases().aliases) or client.collection_exists(
        alias
    )


def search_candidates(
    settings: Settings, rows: list[GoldenRow], *, limit: int, author_id: str | None = None
) -> list[list[tuple[str, str]]] | None:
    """Per question, ``limit`` hits as (chunk_id, content); None when there is no collection."""
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


def rerank(reranker_path: str, question: str, hits: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``hits`` reordered by the CrossEncoder's score for (question, chunk)."""
    if not hits:
        return hits
    model = _cross_encoder(reranker_path)
    scores = model.predict([(question, content) for _, content in hits], show_progress_bar=False)
    order = sorted(range(len(hits)), key=lambda index: -float(scores[index]))
    return [hits[index] for index in order]


_CROSS_ENCODERS: dict[str, object] = {}


def _cross_encoder(path: str):
    if path not in _CROSS_ENCODERS:
        from sentence_transformers import CrossEncoder

        _CROSS_ENCODERS[path] = CrossEncoder(path, device="cpu")
    return _CROSS_ENCODERS[path]


def retrieval_metrics(
    settings: Settings,
    rows: list[GoldenRow],
    *,
    k: int = 5,
    candidates: int = 20,
    reranker_path: str | None = None,
    author_id: str | None = None,
) -> dict[str, float] | None:
    """``{hit@k, mrr}`` and, with a reranker, ``{reranked_hit@k, reranked_mrr}``; None without Qdrant data."""
    rows = [row for row in rows if row.chunk_id]
    if not rows:
        return None
    hits = search_candidates(settings, rows, limit=max(k, candidates), author_id=author_id)
    if hits is None:
        return None
    plain = [
        hit_and_reciprocal_rank([cid for cid, _ in h], row.chunk_id, k)
        for row, h in zip(rows, hits, strict=True)
    ]
    metrics = {f"hit_at_{k}": mean([p[0] for p in plain]), "mrr": mean([p[1] for p in plain])}
    if reranker_path:
        reranked = [
            hit_and_reciprocal_rank(
                [cid for cid, _ in rerank(reranker_path, row.instruction, h)], row.chunk_id, k
            )
            for row, h in zip(rows, hits, strict=True)
        ]
        metrics[f"reranked_hit_at_{k}"] = mean([p[0] for p in reranked])
        metrics["reranked_mrr"] = mean([p[1] for p in reranked])
    metrics["questions"] = float(len(rows))
    return metrics
