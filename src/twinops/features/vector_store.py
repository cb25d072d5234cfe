"""Qdrant collections behind stable aliases (contract 3).

Readers use the aliases ``twin_chunks`` and ``twin_documents``. The real collections are named
``<alias>__<embedder-slug>__<embedder-version>``: a new embedder gets new collections, filled
completely before the aliases move (one atomic alias update), so a reader never sees two vector
spaces mixed. Point ids are ``Chunk.id`` / ``RawDocument.id`` (UUIDs), so upserts are idempotent.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from pydantic import BaseModel

from twinops.domain.documents import Chunk, CleanedDocument, EmbeddedChunk, WritingOrigin
from twinops.errors import ConfigError, NotFound

CHUNKS_ALIAS = "twin_chunks"
DOCUMENTS_ALIAS = "twin_documents"
KEYWORD_FIELDS = ("author_id", "author_name", "document_id", "category", "platform", "content_hash")
_UPSERT_BATCH = 256


class DimensionMismatch(ConfigError):
    """An embedder's vectors do not fit a collection's vector size."""


class ScoredChunk(WritingOrigin):
    """A search hit: the chunk's payload plus its cosine score."""

    score: float
    chunk_id: str
    content_hash: str
    chunk_index: int
    content: str
    token_count: int = 0
    embedding_model_id: str
    embedding_model_version: str

    def to_chunk(self) -> Chunk:
        return Chunk(
            **WritingOrigin.fields_of(self),
            chunk_index=self.chunk_index,
            content=self.content,
            token_count=self.token_count,
            document_content_hash=self.content_hash,
        )


class CollectionTarget(BaseModel):
    """Where a run writes: the two real collections, and whether the aliases already point there."""

    chunks: str
    documents: str
    dimension: int
    live: bool


def collection_name(alias: str, slug: str, version: str) -> str:
    return f"{alias}__{slug}__{version}"


def chunk_payload(item: EmbeddedChunk) -> dict:
    chunk = item.chunk
    return {
        "chunk_id": chunk.id,
        "document_id": chunk.document_id,
        "author_id": chunk.author_id,
        "author_name": chunk.author_name,
        "category": chunk.category.value,
        "platform": chunk.platform.value,
        "source_url": chunk.source_url,
        "published_at": chunk.published_at.isoformat() if chunk.published_at else None,
        # The cleaned document's hash: with document_id and chunk_index it re-derives Chunk.id.
        "content_hash": chunk.document_content_hash,
        "chunk_index": chunk.chunk_index,
        "content": chunk.content,
        "token_count": chunk.token_count,
        "embedding_model_id": item.embedding_model_id,
        "embedding_model_version": item.embedding_model_version,
    }


def document_payload(document: CleanedDocument, chunk_count: int, model_id: str, version: str) -> dict:
    return {
        "document_id": document.document_id,
        "author_id": document.author_id,
        "author_name": document.author_name,
        "category": document.category.value,
        "platform": document.platform.value,
        "source_url": document.source_url,
        "published_at": document.published_at.isoformat() if document.published_at else None,
        "content_hash": document.content_hash,
        "title": document.title,
        "language": document.language,
        "content": document.content,
        "chunk_count": chunk_count,
        "embedding_model_id": model_id,
        "embedding_model_version": version,
    }


class VectorStore:
    """Chunk and document collections in one Qdrant client (local mode or server)."""

    def __init__(
        self,
        client,
        *,
        chunks_alias: str = CHUNKS_ALIAS,
        documents_alias: str = DOCUMENTS_ALIAS,
        replication_factor: int = 1,
    ):
        self.client = client
        self.chunks_alias = chunks_alias
        self.documents_alias = documents_alias
        # Copies of each shard on a Qdrant cluster (TWINOPS_QDRANT_REPLICATION_FACTOR); local mode
        # and a single server keep one whatever is asked.
        self.replication_factor = replication_factor

    # --- collections and aliases ------------------------------------------------------------
    def alias_target(self, alias: str) -> str | None:
        for description in self.client.get_aliases().aliases:
            if description.alias_name == alias:
                return description.collection_name
        return None

    def vector_size(self, name: str) -> int | None:
        """The vector size of collection (or alias) ``name``; None when it does not exist."""
        if not self.client.collection_exists(name):
            name = self.alias_target(name) or ""
            if not name:
                return None
        vectors = self.client.get_collection(name).config.params.vectors
        return int(vectors.size) if hasattr(vectors, "size") else None

    def check_dimension(self, name: str, dimension: int, *, embedder: str) -> None:
        size = self.vector_size(name)
        if size is not None and size != dimension:
            raise DimensionMismatch(
                f"Qdrant collection {name!r} holds {size}-d vectors but embedder {embedder!r} makes "
                f"{dimension}-d vectors: use the embedder that built it, or delete the collection",
                setting="TWINOPS_EMBEDDING_MODEL",
            )

    def _create(self, name: str, dimension: int) -> None:
        from qdrant_client import models

        self.client.create_collection(
            name,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            replication_factor=self.replication_factor,
        )
        with warnings.catch_warnings():
            # Local mode accepts payload indexes but warns that it has no use for them.
            warnings.simplefilter("ignore")
            for field in KEYWORD_FIELDS:
                self.client.create_payload_index(name, field, field_schema=models.PayloadSchemaType.KEYWORD)
            self.client.create_payload_index(
                name, "published_at", field_schema=models.PayloadSchemaType.DATETIME
            )
            self.client.create_payload_index(
                name, "chunk_index", field_schema=models.PayloadSchemaType.INTEGER
            )

    def plan(self, slug: str, version: str, dimension: int, *, embedder: str) -> CollectionTarget:
        """The collections for this embedder, dimension-checked; writes nothing."""
        chunks = collection_name(self.chunks_alias, slug, version)
        documents = collection_name(self.documents_alias, slug, version)
        for name in (chunks, documents):
            self.check_dimension(name, dimension, embedder=embedder)
        live = (
            self.alias_target(self.chunks_alias) == chunks
            and self.alias_target(self.documents_alias) == documents
        )
        return CollectionTarget(chunks=chunks, documents=documents, dimension=dimension, live=live)

    def ensure(self, target: CollectionTarget) -> None:
        """Create ``target``'s collections when missing.

        A collection the aliases do not point at yet is rebuilt from empty, so leftovers of an
        interrupted build never reach readers.
        """
        for name in (target.chunks, target.documents):
            exists = self.client.collection_exists(name)
            if exists and not target.live:
                self.client.delete_collection(name)
                exists = False
            if not exists:
                self._create(name, target.dimension)

    def prepare(self, slug: str, version: str, dimension: int, *, embedder: str) -> CollectionTarget:
        """``plan`` then ``ensure``: checked collections, ready for upserts."""
        target = self.plan(slug, version, dimension, embedder=embedder)
        self.ensure(target)
        return target

    def switch_aliases(self, target: CollectionTarget) -> None:
        """Point both aliases at ``target`` (one request per alias: delete + create together)."""
        from qdrant_client import models

        for alias, collection in (
            (self.chunks_alias, target.chunks),
            (self.documents_alias, target.documents),
        ):
            operations: list = []
            if self.alias_target(alias) is not None:
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                )
            operations.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            )
            self.client.update_collection_aliases(change_aliases_operations=operations)

    # --- writes -------------------------------------------------------------------------------
    def _upsert(self, collection: str, points: list) -> None:
        for start in range(0, len(points), _UPSERT_BATCH):
            self.client.upsert(collection, points=points[start : start + _UPSERT_BATCH], wait=True)

    def upsert_chunks(self, collection: str, items: list[EmbeddedChunk]) -> int:
        from qdrant_client import models

        points = [models.PointStruct(id=i.id, vector=i.embedding, payload=chunk_payload(i)) for i in items]
        self._upsert(collection, points)
        return len(points)

    def upsert_documents(self, collection: str, rows: list[tuple[CleanedDocument, list[float], dict]]) -> int:
        """``rows`` are (document, vector, payload) triples."""
        from qdrant_client import models

        points = [
            models.PointStruct(id=doc.document_id, vector=vector, payload=payload)
            for doc, vector, payload in rows
        ]
        self._upsert(collection, points)
        return len(points)

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        from qdrant_client import models

        ids = sorted(set(ids))
        for start in range(0, len(ids), _UPSERT_BATCH):
            selector = models.PointIdsList(points=ids[start : start + _UPSERT_BATCH])
            self.client.delete(collection, points_selector=selector, wait=True)
        return len(ids)

    # --- reads --------------------------------------------------------------------------------
    @staticmethod
    def _filter(author_id: str | None, category: str | None = None, platform: str | None = None):
        from qdrant_client import models

        conditions = [
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in (("author_id", author_id), ("category", category), ("platform", platform))
            if value
        ]
        return models.Filter(must=conditions) if conditions else None

    def search(
        self,
        vector,
        *,
        author_id: str | None = None,
        limit: int = 10,
        category: str | None = None,
        platform: str | None = None,
    ) -> list[ScoredChunk]:
        """Nearest chunks to ``vector`` (cosine), optionally only ``author_id``'s.

        One request when all is well; the checks run only to explain a failure in one line.
        """
        vector = [float(x) for x in vector]
        try:
            response = self.client.query_points(
                self.chunks_alias,
                query=vector,
                query_filter=self._filter(author_id, category, platform),
                limit=limit,
                with_payload=True,
            )
        except Exception:
            if self.vector_size(self.chunks_alias) is None:
                raise NotFound(
                    f"Qdrant has no {self.chunks_alias!r} collection yet: run `twinops features` first"
                ) from None
            self.check_dimension(self.chunks_alias, len(vector), embedder="the query vector")
            raise
        return [ScoredChunk(score=point.score, **point.payload) for point in response.points]

    def count(self, name: str | None = None, *, author_id: str | None = None) -> int:
        name = name or self.chunks_alias
        if not self.client.collection_exists(name) and self.alias_target(name) is None:
            return 0
        return self.client.count(name, count_filter=self._filter(author_id), exact=True).count

    def point_ids(self, name: str | None = None, *, author_id: str | None = None) -> set[str]:
        name = name or self.chunks_alias
        ids: set[str] = set()
        offset = None
        while True:
            points, offset = self.client.scroll(
                name,
                scroll_filter=self._filter(author_id),
                limit=1024,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            ids.update(str(point.id) for point in points)
            if offset is None:
                return ids
