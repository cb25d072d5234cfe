"""Reranker pairs: (question, positive chunk, hard negatives) for training the cross-encoder.

Hard negatives are the chunks Qdrant ranks highest for the question that are NOT from the
positive's document (a sibling chunk may answer too, so it would be a false negative). Training
queries never take negatives from golden documents, so no golden text reaches training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from twinops.datasets.corpus import RUN_FEATURES_FIRST
from twinops.datasets.instruction import InstructionExample
from twinops.errors import NotFound

CHUNK_ALIAS = "twin_chunks"
# Extra hits fetched so that filtering out the same document still leaves enough negatives.
_SEARCH_HEADROOM = 12


@dataclass(frozen=True)
class RerankerPair:
    query: str
    positive: str
    negatives: tuple[str, ...]
    chunk_id: str
    document_id: str

    def to_row(self) -> dict:
        """Contract 4: query, positive, negatives (list of str), chunk_id."""
        return {
            "query": self.query,
            "positive": self.positive,
            "negatives": list(self.negatives),
            "chunk_id": self.chunk_id,
        }


def _normalize_query(text: str) -> str:
    # Queries must be normalized exactly as the feature side normalizes them (contract 3).
    try:
        from twinops.features.cleaning import normalize_query
    except ImportError:  # the feature package is optional at import time; same whitespace rule
        return " ".join(text.split())
    return normalize_query(text)


def mine_reranker_pairs(
    examples: Sequence[InstructionExample],
    chunk_texts: dict[str, str],
    golden_documents: set[str],
    client,
    embedder,
    *,
    author_id: str | None,
    hard_negatives: int,
    drops: Counter[str],
) -> list[RerankerPair]:
    """One pair per example with at least one hard negative from another document."""
    from qdrant_client import models

    if not client.collection_exists(CHUNK_ALIAS):
        raise NotFound(
            f"the Qdrant chunk collection alias {CHUNK_ALIAS!r} does not exist: {RUN_FEATURES_FIRST}"
        )
    if not examples:
        return []
    queries = [_normalize_query(example.instruction) for example in examples]
    vectors = embedder.encode(queries, normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    query_filter = (
        models.Filter(must=[models.FieldCondition(key="author_id", match=models.MatchValue(value=author_id))])
        if author_id
        else None
    )
    pairs = []
    for example, vector in zip(examples, vectors, strict=True):
        hits = client.query_points(
            CHUNK_ALIAS,
            query=[float(value) for value in vector],
            limit=hard_negatives + _SEARCH_HEADROOM,
            query_filter=query_filter,
            with_payload=True,
        ).points
        in_training = example.document_id not in golden_documents
        negatives: list[str] = []
        for hit in hits:
            payload = hit.payload or {}
            document_id = payload.get("document_id")
            if document_id == example.document_id or payload.get("chunk_id") == example.chunk_id:
                continue
            if in_training and document_id in golden_documents:
                continue
            text = payload.get("content") or chunk_texts.get(str(payload.get("chunk_id")), "")
            if text and text not in negatives:
                negatives.append(text)
            if len(negatives) == hard_negatives:
                break
        if not negatives:
            drops["reranker:no_hard_negatives"] += 1
            continue
        positive = chunk_texts[example.chunk_id]
        pairs.append(
            RerankerPair(
                example.instruction, positive, tuple(negatives), example.chunk_id, example.document_id
            )
        )
    return pairs
