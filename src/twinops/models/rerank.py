"""The twin's reranker as one scorer: a cross-encoder's logit plus the weighted first-stage cosine.

A ``twin-reranker`` folder is a sentence-transformers ``CrossEncoder`` with, beside it,
``twinops_reranker.json`` and the first-stage embedder in ``first_stage/``. Its score for
(query, passage) is::

    cross_encoder_logit(query, passage) + first_stage_weight * cosine(embed(query), embed(passage))

Training learns the cross-encoder as a correction on top of cosine retrieval (the weight is learned
too), so before any training the ranking *is* cosine order, and the trained ranking departs from
it only where the cross-encoder has learned better. Training, evaluation and the reranker server
all score through ``Reranker.score``, so the metric that gates a reranker is what serving ranks by.
A plain cross-encoder folder (no ``twinops_reranker.json``) scores by its logit alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from twinops.errors import ConfigError

RERANKER_FILE = "twinops_reranker.json"
FIRST_STAGE_DIR = "first_stage"


class RerankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_stage_weight: float = Field(0.0, description="Weight of the first-stage cosine in the score.")
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
        scores = [float(value) for value in logits]
        if self.config.first_stage_weight == 0.0:
            return scores
        vectors = self.embedder.encode(
            [query, *passages], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        cosines = vectors[1:] @ vectors[0]
        return [
            score + self.config.first_stage_weight * float(c)
            for score, c in zip(scores, cosines, strict=True)
        ]


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
