"""The request log and its feedback, in MongoDB: what the RAG server answered, and what users thought.

``rag_requests`` holds one ``RagRequestRecord`` per request (``_id`` = request id, so writing the
same request twice keeps the first); ``rag_feedback`` holds ``Feedback`` rows (``_id`` = feedback
id) pointing at a logged request: one per (request, voter) when the server named the voter, the
latest rating kept. Serving writes both; the datasets stage reads rated requests
(the data flywheel) and monitoring reads recent requests, all through this repository.

MongoDB keeps datetimes to the millisecond, so ``created_at`` is cut to milliseconds before it is
stored: a ``Feedback`` id (a hash over its fields, ``created_at`` included) is the same before and
after a round trip. ``add_feedback`` returns that stored form.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from twinops.domain.serving import Feedback, RagRequestRecord
from twinops.errors import NotFound


def _to_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class RequestLogRepository:
    requests_collection = "rag_requests"
    feedback_collection = "rag_feedback"

    def __init__(self, db: Database) -> None:
        self._requests = db[self.requests_collection]
        self._feedback = db[self.feedback_collection]
        self._requests.create_index([("created_at", DESCENDING)])
        self._feedback.create_index([("request_id", ASCENDING), ("created_at", ASCENDING)])
        self._feedback.create_index([("created_at", ASCENDING)])

    def record(self, record: RagRequestRecord) -> None:
        """Log one answer; a request id already logged is left as it was (retries are harmless)."""
        row = record.model_copy(update={"created_at": _to_millis(record.created_at)}).model_dump(
            mode="python"
        )
        row["_id"] = record.request_id
        self._requests.update_one({"_id": record.request_id}, {"$setOnInsert": row}, upsert=True)

    def get(self, request_id: str) -> RagRequestRecord:
        row = self._requests.find_one({"_id": request_id})
        if row is None:
            raise NotFound(
                f"request {request_id!r} is not in the request log: use the request_id of a RAG answer"
            )
        return _request(row)

    def add_feedback(self, feedback: Feedback) -> Feedback:
        """Store ``feedback`` for a logged request and return it as stored; unknown request: NotFound."""
        if self._requests.count_documents({"_id": feedback.request_id}, limit=1) == 0:
            raise NotFound(
                f"no RAG answer with request id {feedback.request_id!r} was logged: send feedback "
                "for the request_id an answer carried"
            )
        stored = feedback.model_copy(update={"created_at": _to_millis(feedback.created_at)})
        row = stored.model_dump(mode="python", exclude={"id"})
        if stored.voter is None:
            # An id over the content: the same rating sent twice is stored once.
            self._feedback.update_one({"_id": stored.id}, {"$setOnInsert": row}, upsert=True)
            return stored
        # An id over (request, voter): the voter's latest rating replaces the earlier one. Two
        # upserts racing on a new _id: one inserts, the other fails on the key and replaces.
        try:
            self._feedback.replace_one({"_id": stored.id}, row, upsert=True)
        except DuplicateKeyError:
            self._feedback.replace_one({"_id": stored.id}, row, upsert=True)
        return stored

    def feedback_for(self, request_id: str) -> list[Feedback]:
        """Every feedback on one request, oldest first."""
        rows = self._feedback.find({"request_id": request_id}).sort("created_at", ASCENDING)
        return [_feedback(row) for row in rows]

    def rated_requests(self, since: datetime | None = None) -> list[tuple[RagRequestRecord, Feedback]]:
        """Each feedback given after ``since`` (all when None) with its request, oldest feedback first."""
        query = {"created_at": {"$gt": since}} if since is not None else {}
        feedback = [_feedback(row) for row in self._feedback.find(query).sort("created_at", ASCENDING)]
        ids = sorted({item.request_id for item in feedback})
        requests = {row["_id"]: _request(row) for row in self._requests.find({"_id": {"$in": ids}})}
        return [(requests[item.request_id], item) for item in feedback if item.request_id in requests]

    def recent(self, limit: int = 100, *, since: datetime | None = None) -> list[RagRequestRecord]:
        """The newest logged requests (after ``since`` when given), newest first."""
        query = {"created_at": {"$gt": since}} if since is not None else {}
        rows = self._requests.find(query).sort("created_at", DESCENDING).limit(limit)
        return [_request(row) for row in rows]

    def count(self) -> int:
        return self._requests.count_documents({})


def _request(row: dict) -> RagRequestRecord:
    return RagRequestRecord.model_validate({k: v for k, v in row.items() if k != "_id"})


def _feedback(row: dict) -> Feedback:
    return Feedback.model_validate({k: v for k, v in row.items() if k != "_id"})
