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
from pymongo.errors import BulkWriteError, DuplicateKeyError

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


def _row(document: RawDocument, revision: int, run_id: str | None, source: str | None) -> dict:
    row = document.model_dump(mode="python")
    row.update(_id=document.id, revision=revision, updated_at=utcnow(), crawl_run_id=run_id, source=source)
    return row


# What ``upsert`` reads to decide between new, unchanged and changed.
_DECIDING_FIELDS = {"content_hash": 1, "revision": 1, "deleted_at": 1, "source": 1}

# Documents marked deleted (gone from their source) stay as rows, with ``deleted_at``; every read
# below asks for live ones. ``None`` also matches rows written before the field existed.
LIVE = {"deleted_at": None}


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
        # Whether the next ``upsert`` is likely a new document: the last one's outcome predicts it
        # (a first crawl is all new documents, a re-crawl mostly known ones). A new one expected is
        # inserted at once, one round trip as a raw ``replace_one`` is; a known one is read first.
        self._expect_new = True

    def upsert(
        self, document: RawDocument, run_id: str | None = None, *, source: str | None = None
    ) -> UpsertOutcome:
        """Write ``document`` whole: new, a new revision (old one kept), or nothing if unchanged.

        ``source`` is the configured source that produced it (what ``mark_gone`` compares against).
        A document marked deleted that comes back is live again (``UPDATED``).
        """
        if self._expect_new:
            try:
                self._documents.insert_one(_row(document, 1, run_id, source))
                return UpsertOutcome.NEW
            except DuplicateKeyError:  # known after all: decide as for a known one
                self._expect_new = False
        return self._upsert_known(document, run_id, source)

    def _upsert_known(self, document: RawDocument, run_id: str | None, source: str | None) -> UpsertOutcome:
        """``upsert`` of a document that is probably stored already: read what decides, then write."""
        # Only what decides new / unchanged / changed: an unchanged document (most of a re-crawl)
        # costs one small read, not its whole text over the wire; a changed one reads it in full.
        current = self._documents.find_one({"_id": document.id}, _DECIDING_FIELDS)
        if current is None:
            self._expect_new = True
            try:
                self._documents.insert_one(_row(document, 1, run_id, source))
            except DuplicateKeyError:
                # A concurrent writer inserted it first: compare against that one instead.
                return self._upsert_known(document, run_id, source)
            return UpsertOutcome.NEW
        if current["content_hash"] == document.content_hash:
            revived = current.get("deleted_at") is not None
            if revived or (source and current.get("source") != source):
                changes: dict = {"$set": {"source": source or current.get("source")}}
                if revived:
                    changes["$set"].update(updated_at=utcnow(), crawl_run_id=run_id)
                    changes["$unset"] = {"deleted_at": ""}
                self._documents.update_one({"_id": document.id}, changes)
            return UpsertOutcome.UPDATED if revived else UpsertOutcome.UNCHANGED
        previous = self._documents.find_one({"_id": document.id, "revision": current["revision"]})
        if previous is None:  # a concurrent writer replaced it meanwhile: compare against that one
            return self._upsert_known(document, run_id, source)
        previous["document_id"] = previous.pop("_id")
        previous["_id"] = f"{document.id}:{current['revision']}"
        previous["superseded_at"] = utcnow()
        # Archive first, with a deterministic id, so a retry after a crash is idempotent.
        self._revisions.replace_one({"_id": previous["_id"]}, previous, upsert=True)
        self._documents.replace_one(
            {"_id": document.id, "revision": current["revision"]},
            _row(document, current["revision"] + 1, run_id, source or current.get("source")),
        )
        return UpsertOutcome.UPDATED

    def upsert_many(
        self, documents: list[RawDocument], run_id: str | None = None, *, source: str | None = None
    ) -> list[UpsertOutcome]:
        """``upsert`` of each document, in as few round trips as their outcomes allow.

        One read decides for all of them and one unordered ``insert_many`` writes the new ones (one
        journal wait for the lot instead of one each); an unchanged one writes nothing. The rest (a
        changed, revived or re-sourced document, a new one a concurrent writer inserted meanwhile,
        or one whose insert failed) goes through ``upsert``, which raises that document's error.
        """
        ids = [document.id for document in documents]
        if len(set(ids)) != len(ids):  # the same document twice: in order, one at a time
            return [self.upsert(document, run_id, source=source) for document in documents]
        current = {row["_id"]: row for row in self._documents.find({"_id": {"$in": ids}}, _DECIDING_FIELDS)}
        outcomes: list[UpsertOutcome | None] = [None] * len(documents)
        new = []
        for index, document in enumerate(documents):
            row = current.get(document.id)
            if row is None:
                new.append(index)
            elif (
                row["content_hash"] == document.content_hash
                and row.get("deleted_at") is None
                and (not source or row.get("source") == source)
            ):
                outcomes[index] = UpsertOutcome.UNCHANGED
        if new:
            failed: set[int] = set()
            try:
                self._documents.insert_many(
                    [_row(documents[index], 1, run_id, source) for index in new], ordered=False
                )
            except BulkWriteError as error:
                if error.details.get("writeConcernErrors"):  # written, but not as durably as asked
                    raise
                failed = {new[failure["index"]] for failure in error.details.get("writeErrors", [])}
            for index in new:
                if index not in failed:
                    outcomes[index] = UpsertOutcome.NEW
        return [
            outcome if outcome is not None else self._upsert_known(document, run_id, source)
            for document, outcome in zip(documents, outcomes, strict=True)
        ]

    def live_ids_from(self, source: str, *, author_id: str) -> set[str]:
        """Ids of the live documents ``source`` produced for the author."""
        query = {"source": source, "author_id": author_id, **LIVE}
        return {row["_id"] for row in self._documents.find(query, {"_id": 1})}

    def mark_deleted(self, ids: set[str], run_id: str | None = None) -> int:
        """Mark documents gone from their source; the next feature run drops their chunks."""
        if not ids:
            return 0
        now = utcnow()
        result = self._documents.update_many(
            {"_id": {"$in": sorted(ids)}, **LIVE},
            {"$set": {"deleted_at": now, "updated_at": now, "crawl_run_id": run_id}},
        )
        return result.modified_count

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
        query: dict = dict(LIVE)
        if since is not None:
            query["updated_at"] = {"$gt": since}
        if author_id:
            query["author_id"] = author_id
        for row in self._documents.find(query).sort("updated_at", ASCENDING):
            yield _from_row(row)

    def ids(self, *, author_id: str | None = None) -> set[str]:
        """Ids of the live documents (of one author)."""
        query = {"author_id": author_id, **LIVE} if author_id else dict(LIVE)
        return {row["_id"] for row in self._documents.find(query, {"_id": 1})}

    def count(self, *, author_id: str | None = None) -> int:
        return self._documents.count_documents({"author_id": author_id, **LIVE} if author_id else dict(LIVE))
