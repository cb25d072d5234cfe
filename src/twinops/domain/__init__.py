"""The pure domain model: pydantic v2 types with no I/O."""

from twinops.domain.documents import (
    Author,
    Category,
    Chunk,
    CleanedDocument,
    EmbeddedChunk,
    Platform,
    RawDocument,
)
from twinops.domain.hashing import content_hash, stable_uuid
from twinops.domain.versions import DatasetKind, DatasetVersion, ModelVersion

__all__ = [
    "Author",
    "Category",
    "Chunk",
    "CleanedDocument",
    "DatasetKind",
    "DatasetVersion",
    "EmbeddedChunk",
    "ModelVersion",
    "Platform",
    "RawDocument",
    "content_hash",
    "stable_uuid",
]
