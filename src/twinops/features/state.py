"""What the feature pipeline remembers between runs, in MongoDB.

``feature_documents``: one row per warehouse document it has seen: the gate outcome, the cleaned
document and its chunks (when kept), the dedup hash and MinHash signature, and the fingerprint
of the config that produced them. ``feature_runs``: per scope (one author, or all), the warehouse
watermark and fingerprint of the last committed run. Rows are written only after Qdrant has the
vectors, so a crash in between leaves the documents "unprocessed" and the next run redoes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from bson.binary import Binary
from pydantic import BaseModel, Field
from pymongo import ASCENDING
from pymongo.database import Database

from twinops.domain.documents import Chunk, utcnow
from twinops.features.results import GateOutcome

ALL_AUTHORS = "*"


class DocumentState(GateOutcome):
    """The feature pipeline's record of one warehouse document: the gate's outcome, the config that
    produced it, and the chunks of a kept document."""

    fingerprint: str
    status: Literal["kept", "rejected"]
    chunks: list[Chunk] = Field(default_factory=list)
    processed_at: datetime = Field(default_factory=utcnow)

    @property
    def chunk_ids(self) -> list[str]:
        return [chunk.id for chunk in self.chunks]


class RunState(BaseModel):
    scope: str
    watermark: datetime | None = None
    fingerprint: str
    chunks_collection: str
    version_id: str | None = None
    finished_at: datetime = Field(default_factory=utcnow)


def _to_row(state: DocumentState) -> dict[str, Any]:
    row = state.model_dump(mode="python", exclude={"minhash", "chunks", "cleaned"})
    row["_id"] = state.document_id
    row["cleaned"] = state.cleaned.model_dump(mode="python") if state.cleaned else None
    row["chunks"] = [chunk.model_dump(mode="python", exclude={"id"}) for chunk in state.chunks]
    # Queried by `twinops lineage CHUNK_ID` (a plain array field: any wire server matches it).
    row["chunk_ids"] = state.chunk_ids
    row["minhash"] = Binary(state.minhash) if state.minhash else None
    if row["cleaned"]:
        row["cleaned"].pop("content_hash", None)
    return row


def _from_row(row: dict[str, Any]) -> DocumentState:
    data = {k: v for k, v in row.items() if k in DocumentState.model_fields}
    data["minhash"] = bytes(row["minhash"]) if row.get("minhash") else None
    return DocumentState.model_validate(data)


class FeatureStateRepository:
    documents_collection = "feature_documents"
    runs_collection = "feature_runs"

    def __init__(self, db: Database) -> None:
        self._documents = db[self.documents_collection]
        self._runs = db[self.runs_collection]
        self._documents.create_index([("author_id", ASCENDING), ("status", ASCENDING)])
        self._documents.create_index([("chunk_ids", ASCENDING)])

    # --- documents ----------------------------------------------------------------------------
    def get_many(self, document_ids: list[str]) -> dict[str, DocumentState]:
        found: dict[str, DocumentState] = {}
        for start in range(0, len(document_ids), 500):
            for row in self._documents.find({"_id": {"$in": document_ids[start : start + 500]}}):
                found[row["_id"]] = _from_row(row)
        return found

    def iter_scope(
        self, author_id: str | None = None, *, status: str | None = None
    ) -> Iterator[DocumentState]:
        query: dict[str, Any] = {}
        if author_id:
            query["author_id"] = author_id
        if status:
            query["status"] = status
        for row in self._documents.find(query).sort("_id", ASCENDING):
            yield _from_row(row)

    def ids(self, author_id: str | None = None) -> set[str]:
        query = {"author_id": author_id} if author_id else {}
        return {row["_id"] for row in self._documents.find(query, {"_id": 1})}

    def find_by_chunk(self, chunk_id: str) -> DocumentState | None:
        row = self._documents.find_one({"chunk_ids": chunk_id})
        return _from_row(row) if row else None

    def get(self, document_id: str) -> DocumentState | None:
        row = self._documents.find_one({"_id": document_id})
        return _from_row(row) if row else None

    def save_many(self, states: list[DocumentState]) -> None:
        for state in states:
            self._documents.replace_one({"_id": state.document_id}, _to_row(state), upsert=True)

    def delete_many(self, document_ids: list[str]) -> None:
        for start in range(0, len(document_ids), 500):
            self._documents.delete_many({"_id": {"$in": document_ids[start : start + 500]}})

    # --- runs ---------------------------------------------------------------------------------
    def run_state(self, scope: str) -> RunState | None:
        row = self._runs.find_one({"_id": scope})
        if row is None:
            return None
        return RunState.model_validate({k: v for k, v in row.items() if k != "_id"})

    def save_run_state(self, state: RunState) -> None:
        row = state.model_dump(mode="python")
        row["_id"] = state.scope
        self._runs.replace_one({"_id": state.scope}, row, upsert=True)
