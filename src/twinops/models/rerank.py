"""The twin's reranker as one scorer: a cross-encoder's logit plus weighted first-stage and lexical scores.

A ``twin-reranker`` folder is a sentence-transformers ``CrossEncoder`` with, beside it,
``twinops_reranker.json`` and the first-stage embedder in ``first_stage/``. Its score for
(query, passage) within a candidate list is::

    cross_encoder_logit(query, passage)
      + first_stage_weight * cosine(embed(query), embed(passage))
      + lexical_weight * lexical_overlap(query, passage | the list)

``lexical_overlap`` is the share of the query's words found in the passage, each word weighted by
its IDF over the candidate list (a word every candidate has counts for nothing): the term-match
signal an embedding blurs, the one that tells apart sibling chunks of one document. Both weights
are learned; the cross-encoder is learned as a correction on top. Training, evaluation and the
reranker server all score through ``Reranker.score`` (training's trainable copy through the same
``fused_scores`` and ``lexical_overlap``), so the metric that gates a reranker is what serving
ranks by. A plain cross-encoder folder (no ``twinops_reranker.json``) scores by its logit alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from twinops.domain.text import words
from twinops.errors import ConfigError

RERANKER_FILE = "twinops_reranker.json"
FIRST_STAGE_DIR = "first_stage"


class RerankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_stage_weight: float = Field(0.0, description="Weight of the first-stage cosine in the score.")
    lexical_weight: float = Field(0.0, description="Weight of the list-IDF query-word overlap in the score.")
    first_stage: str | None = Field(
        FIRST_STAGE_DIR, description="Embedder folder (relative to the reranker folder); None = logit only."
    )
    max_length: int | None = Field(
        None, ge=16, description="Tokens per (query, passage) pair; None = the model's own limit."
    )


def read_config(folder: str | Path) -> RerankerConfig:
    """The folder's ``twinops_reranker.json``; a plain cross-encoder gets logit-only scoring."""
    path = Path(folder) / RERANKER_FILE
    if not path.is_file():
        return RerankerConfig(first_stage=None)
    try:
        return RerankerConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not a valid reranker config ({error}): retrain the reranker") from error


def write_config(folder: str | Path, config: RerankerConfig) -> None:
    (Path(folder) / RERANKER_FILE).write_text(config.model_dump_json(indent=2), encoding="utf-8")


def lexical_overlap(query: str, passages: Sequence[str]) -> list[float]:
    """Per passage, the IDF-weighted share of the query's words it contains (0..1), IDF over ``passages``.

    ``idf = log((n + 1) / (df + 0.5))`` for a list of ``n`` passages, so a word in every candidate
    weighs little and a word only the right passage has weighs most. No stop-word list: the list's
    own frequencies discount the common words.
    """
    terms = set(words(query))
    bags = [set(words(passage)) for passage in passages]
    if not terms or not bags:
        return [0.0] * len(passages)
    size = len(bags)
    idf = {term: math.log((size + 1) / (sum(term in bag for bag in bags) + 0.5)) for term in terms}
    total = sum(idf.values())
    return [sum(idf[term] for term in terms if term in bag) / total for bag in bags]


def fused_scores(
    logits: Sequence[float], cosines: Sequence[float], lexical: Sequence[float], config: RerankerConfig
) -> list[float]:
    """``logit + first_stage_weight * cosine + lexical_weight * overlap`` per candidate."""
    return [
        float(logit) + config.first_stage_weight * float(cosine) + config.lexical_weight * float(overlap)
        for logit, cosine, overlap in zip(logits, cosines, lexical, strict=True)
    ]


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when asked for or available (``auto``), else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise ConfigError("device `cuda` was asked for but no CUDA device is visible: use device auto or cpu")
    return "cpu"


@dataclass
class Reranker:
    """A loaded reranker: ``score(query, passages)`` is what every ranking uses."""

    cross_encoder: Any
    embedder: Any | None
    config: RerankerConfig
    folder: str

    def score(self, query: str, passages: list[str], *, batch_size: int = 32) -> list[float]:
        if not passages:
            return []
        pairs = [(query, passage) for passage in passages]
        if self.embedder is None:  # a plain cross-encoder: its own predict, activation included
            scores = self.cross_encoder.predict(
                pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
            )
            return [float(value) for value in scores]
        import torch

        # The raw logit, as training added the cosine to it (predict would squash it with a sigmoid).
        logits = self.cross_encoder.predict(
            pairs,
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            activation_fn=torch.nn.Identity(),
        )
        cosines = [0.0] * len(passages)
        if self.config.first_stage_weight != 0.0:
            vectors = self.embedder.encode(
                [query, *passages], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            cosines = [float(value) for value in vectors[1:] @ vectors[0]]
        lexical = (
            lexical_overlap(query, passages) if self.config.lexical_weight != 0.0 else [0.0] * len(passages)
        )
        return fused_scores(logits, cosines, lexical, self.config)


def load_reranker(folder: str | Path, *, device: str = "auto") -> Reranker:
    """The reranker in ``folder`` (see the module docstring) on ``pick_device(device)``."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"reranker folder {folder} has no config.json: pass a trained reranker folder")
    config = read_config(folder)
    placed = pick_device(device)
    cross_encoder = CrossEncoder(str(folder), device=placed, max_length=config.max_length)  # None: its own
    embedder = None
    if config.first_stage:
        embedder = SentenceTransformer(str(folder / config.first_stage), device=placed)
    return Reranker(cross_encoder=cross_encoder, embedder=embedder, config=config, folder=str(folder))
