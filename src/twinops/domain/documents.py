"""Documents as they move through the feature side: raw → cleaned → chunk → embedded chunk."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from twinops.domain.hashing import content_hash, drop_computed_fields, stable_uuid


def utcnow() -> datetime:
    return datetime.now(UTC)


class Category(StrEnum):
    """What kind of writing a document is; cleaning and chunking strategies key on it."""

    ARTICLES = "articles"
    POSTS = "posts"
    REPOSITORIES = "repositories"
    EXPORTS = "exports"


class Platform(StrEnum):
    """Where a document came from."""

    WEB = "web"
    MEDIUM = "medium"
    SUBSTACK = "substack"
    LINKEDIN = "linkedin"
    GIT = "git"
    LOCAL = "local"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _ignore_computed(cls, data: Any) -> Any:
        return drop_computed_fields(cls, data)


class DocumentOrigin(BaseModel):
    """Which warehouse document a record is about, whose writing it is and where it came from.

    Every record after collection carries these fields (the gate's decision, the cleaned document,
    its chunks, the feature state): they are declared here once, and one stage's record is built
    from the last one's with ``DocumentOrigin.fields_of(record)``.
    """

    document_id: str
    author_id: str
    author_name: str
    platform: Platform
    source_url: str

    @classmethod
    def fields_of(cls, record: Any) -> dict[str, Any]:
        """This class's fields as ``record`` holds them (any object with those attributes)."""
        return {name: getattr(record, name) for name in cls.model_fields}


class WritingOrigin(DocumentOrigin):
    """``DocumentOrigin`` plus what kind of writing it is and when it was published: what the cleaned
    document and each of its chunks carry from the raw document."""

    category: Category
    published_at: datetime | None = None


class Author(_Frozen):
    """A person whose writing the twin learns."""

    full_name: str = Field(min_length=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return stable_uuid("author", self.full_name.strip().casefold())


class RawDocument(_Frozen):
    """One collected document, standardized but not cleaned. Identity: (platform, source_url)."""

    platform: Platform
    category: Category
    source_url: str = Field(min_length=1)
    author_id: str
    author_name: str
    title: str = ""
    content: str
    published_at: datetime | None = None
    fetched_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.content)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return stable_uuid("document", self.platform.value, self.source_url)

    @property
    def document_id(self) -> str:
        """``id`` under the name the later stages give it (``DocumentOrigin``)."""
        return self.id


class CleanedDocument(_Frozen, WritingOrigin):
    """A document after cleaning and quality gates, ready for chunking."""

    title: str = ""
    content: str
    language: str | None = None
    source_content_hash: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.content)


class Chunk(_Frozen, WritingOrigin):
    """A token-bounded piece of a cleaned document. Its id is deterministic."""

    chunk_index: int = Field(ge=0)
    content: str
    token_count: int = Field(ge=0)
    document_content_hash: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return stable_uuid("chunk", self.document_id, self.document_content_hash, self.chunk_index)


class EmbeddedChunk(_Frozen):
    """A chunk with its vector and the embedder that produced it (no mixed vector spaces)."""

    chunk: Chunk
    embedding: list[float]
    embedding_model_id: str
    embedding_model_version: str

    @property
    def id(self) -> str:
        return self.chunk.id
