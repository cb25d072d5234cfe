"""The document warehouse: authors and raw documents with revisions, in MongoDB.

``documents`` holds the current revision of each (platform, source_url); earlier revisions move
to ``document_revisions`` with their hashes. Re-collecting unchanged content writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from twinops.domain.documents import Author, RawDocument, utcnow


class UpsertOutcome(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class StoredDocument(BaseModel):
    """A warehouse row: the document plus its revision bookkeeping."""

    document: RawDocument
    revision: int
    updated_at: datetime
    crawl_run_id: str | None = None


def _row(document: RawDocument, revision: int, run_id: str | None) -> dict:
    row = document.model_dump(mode="python")
    row.update(_id=document.id, revision=revision, updated_at=utcnow(), crawl_run_id=run_id)
    return row


def _from_row(row: dict) -> StoredDocument:
    fields = {k: v for k, v in row.items() if k in RawDocument.model_fields}
    return StoredDocument(
        document=RawDocument.model_validate(fields),
        revision=row["revision"],
        updated_at=row["updated_at"],
        crawl_run_id=row.get("crawl_run_id"),
    )


class AuthorRepository:
    def __init__(self, db: Database) -> None:
        self._collection = db["authors"]

    def upsert(self, author: Author) -> None:
        self._collection.update_one(
            {"_id": author.id},
            {"$set": {"full_name": author.full_name}, "$setOnInsert": {"created_at": utcnow()}},
            upsert=True,
        )

    def find_by_name(self, full_name: str) -> Author | None:
        row = self._collection.find_one({"full_name": full_name})
        return Author(full_name=row["full_name"]) if row else None

    def all(self) -> list[Author]:
        return [Author(full_name=row["full_name"]) for row in self._collection.find().sort("full_name")]


class DocumentRepository:
    def __init__(self, db: Database) -> None:
        self._documents = db["documents"]
        self._revisions = db["document_revisions"]
        self._documents.create_index([("platform", ASCENDING), ("source_url", ASCENDING)], unique=True)
        self._documents.create_index([("updated_at", ASCENDING)])
        self._documents.create_index([("author_id", ASCENDING), ("category", ASCENDING)])
        self._revisions.create_index([("document_id", ASCENDING), ("revision", ASCENDING)])

    def upsert(self, document: RawDocument, run_id: str | None = None) -> UpsertOutcome:
        """Write ``document`` whole: new, a new revision (old one kept), or nothing if unchanged."""
        current = self._documents.find_one({"_id": document.id})
        if current is None:
            try:
                self._documents.insert_one(_row(document, 1, run_id))
            except DuplicateKeyError:
                # A concurrent writer inserted it first: compare against that one instead.
                return self.upsert(document, run_id)
            return UpsertOutcome.NEW
        if current["content_hash"] == document.content_hash:
            return UpsertOutcome.UNCHANGED
        previous = dict(current)
        previous["document_id"] = previous.pop("_id")
        previous["_id"] = f"{document.id}:{current['revision']}"
        previous["superseded_at"] = utcnow()
        # Archive first, with a deterministic id, so a retry after a crash is idempotent.
        self._revisions.replace_one({"_id": previous["_id"]}, previous, upsert=True)
        self._documents.replace_one(
            {"_id": document.id, "revision": current["revision"]},
            _row(document, current["revision"] + 1, run_id),
        )
        return UpsertOutcome.UPDATED

    def get(self, document_id: str) -> StoredDocument | None:
        row = self._documents.find_one({"_id": document_id})
        return _from_row(row) if row else None

    def revisions(self, document_id: str) -> list[dict]:
        """Earlier revisions (hash, revision, superseded_at), oldest first."""
        return list(
            self._revisions.find(
                {"document_id": document_id},
                {"_id": 0, "revision": 1, "content_hash": 1, "superseded_at": 1},
            ).sort("revision", ASCENDING)
        )

    def changed_since(
        self, since: datetime | None = None, *, author_id: str | None = None
    ) -> Iterator[StoredDocument]:
        """Documents whose current revision was written after ``since`` (all when None)."""
        query: dict = {}
        if since is not None:
            query["updated_at"] = {"$gt": since}
        if author_id:
            query["author_id"] = author_id
        for row in self._documents.find(query).sort("updated_at", ASCENDING):
            yield _from_row(row)

    def ids(self, *, author_id: str | None = None) -> set[str]:
        query = {"author_id": author_id} if author_id else {}
        return {row["_id"] for row in self._documents.find(query, {"_id": 1})}

    def count(self, *, author_id: str | None = None) -> int:
        return self._documents.count_documents({"author_id": author_id} if author_id else {})
