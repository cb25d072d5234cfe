"""Batched sentence-transformers embedding; every vector carries the embedder's id and version."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinops.domain.documents import Chunk, EmbeddedChunk
from twinops.settings import Settings

_SLUG = re.compile(r"[^a-z0-9]+")


def embedder_slug(model_id: str) -> str:
    """A collection-name-safe form of the model reference (``bundled:`` and folders shortened)."""
    name = model_id.removeprefix("bundled:")
    if "/" in name and name.startswith(("/", ".", "~")):
        name = name.rstrip("/").rsplit("/", 1)[-1]
    return _SLUG.sub("-", name.casefold()).strip("-")[:48] or "embedder"


@dataclass(frozen=True)
class Embedder:
    """The loaded model plus the identity stamped on its vectors."""

    model: Any  # sentence_transformers.SentenceTransformer
    model_id: str
    version: str

    @property
    def slug(self) -> str:
        return embedder_slug(self.model_id)

    @property
    def dimension(self) -> int:
        getter = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def max_seq_length(self) -> int | None:
        return getattr(self.model, "max_seq_length", None)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def encode(self, texts: list[str], *, batch_size: int, normalize: bool = True) -> np.ndarray:
        """Float32 vectors, one row per text: ``SentenceTransformer.encode`` with the model's own
        pooling. ``normalize`` makes them unit length (cosine = dot product, as the index stores
        them); without it the model's own modules decide (the embeddings API serves that)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=normalize,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def open_embedder(settings: Settings) -> Embedder:
    """The configured embedder (``TWINOPS_EMBEDDING_MODEL``), loaded once per process."""
    from twinops.models.loaders import embedder_identity, load_embedder

    model_id, version = embedder_identity(settings)
    return Embedder(model=load_embedder(settings), model_id=model_id, version=version)


def embed_chunks(
    embedder: Embedder,
    chunks: list[Chunk],
    *,
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> list[EmbeddedChunk]:
    """Embed ``chunks`` in slices (progress per slice); order is preserved."""
    embedded: list[EmbeddedChunk] = []
    # Slices of several batches keep the progress bar moving while letting sentence-transformers
    # sort each slice by length (most of its speed on CPU comes from that).
    step = batch_size * 8
    for start in range(0, len(chunks), step):
        part = chunks[start : start + step]
        vectors = embedder.encode([chunk.content for chunk in part], batch_size=batch_size)
        embedded += [
            EmbeddedChunk(
                chunk=chunk,
                embedding=vector.tolist(),
                embedding_model_id=embedder.model_id,
                embedding_model_version=embedder.version,
            )
            for chunk, vector in zip(part, vectors, strict=True)
        ]
        if on_progress:
            on_progress(len(part))
    return embedded
