"""Answer similarity to the reference: MiniLM embedding cosine and ROUGE-L F1 (ranking metrics:
``twinops.domain.stats.hit_and_reciprocal_rank``)."""

from __future__ import annotations

from statistics import fmean


def embedding_cosine(embedder, answers: list[str], references: list[str]) -> list[float]:
    """Cosine of each answer to its reference (normalized MiniLM embeddings)."""
    import numpy as np

    if not answers:
        return []
    left = embedder.encode(answers, normalize_embeddings=True, convert_to_numpy=True)
    right = embedder.encode(references, normalize_embeddings=True, convert_to_numpy=True)
    return [float(value) for value in np.sum(left * right, axis=1)]


def rouge_l(answers: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F1 of each answer against its reference (stemmed)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, ans)["rougeL"].fmeasure for ans, ref in zip(answers, references, strict=True)]


def mean(values: list[float]) -> float:
    return fmean(values) if values else float("nan")
