"""ETL run records (``crawl_runs``) and the change feed downstream stages read incrementally.

The change feed is a query on the warehouse's own bookkeeping (each current revision carries the
run that wrote it and when), so it works on any MongoDB-compatible server, change streams or not.

A run records the process that runs it (host, PID and the PID's start time). A process killed
mid-run never finishes its record; the next ``start`` on the same host marks such a run ``failed``
("abandoned"), so no run stays ``running`` for good. A run of another host (a pod) is left as it is:
its process cannot be seen from here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psutil
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import OperationFailure

from twinops.domain.documents import utcnow
from twinops.errors import NotFound, ServiceUnavailable
from twinops.infra.documents import LIVE, DocumentRepository, StoredDocument, _from_row


class CrawlRun(BaseModel):
    """One ETL run: what it was asked to collect and what came of it."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = Field("running", description="running | finished | failed (crashed or nothing usable)")
    sources: list[str] = Field(default_factory=list, description="`author: source` strings.")
    totals: dict[str, int] = Field(default_factory=dict)
    results: list[dict[str, Any]] = Field(default_factory=list, description="Per-source results.")
    errors: list[str] = Field(default_factory=list, description="`source: reason` for failed sources.")
    host: str | None = Field(None, description="The host of the process running it.")
    pid: int | None = Field(None, description="The PID of the process running it.")
    pid_started: float | None = Field(
        None, description="That process's start time (epoch seconds): a reused PID is another process."
    )


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": psutil.Process().create_time()}


def _process_gone(run: CrawlRun) -> bool:
    """Whether the process that ran ``run`` on this host has ended (False when it cannot be told)."""
    if run.host != socket.gethostname() or run.pid is None:
        return False
    try:
        process = psutil.Process(run.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        return run.pid_started is not None and abs(process.create_time() - run.pid_started) > 1
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


class CrawlRunRepository:
    def __init__(self, db: Database) -> None:
        self._runs = db["crawl_runs"]
        self._runs.create_index([("started_at", ASCENDING)])

    def start(self, run_id: str, sources: list[str], started_at: datetime | None = None) -> CrawlRun:
        self.fail_abandoned()
        run = CrawlRun(run_id=run_id, started_at=started_at or utcnow(), sources=sources, **_this_process())
        self._runs.insert_one({"_id": run_id, **run.model_dump(exclude={"run_id"})})
        return run

    def fail_abandoned(self) -> list[str]:
        """Mark ``failed`` every run still ``running`` whose process on this host has ended; return
        their ids."""
        abandoned = []
        for row in self._runs.find({"status": "running"}):
            run = CrawlRun(run_id=row.pop("_id"), **row)
            if not _process_gone(run):
                continue
            reason = f"abandoned: process {run.pid} on {run.host} ended without finishing the run"
            self._runs.update_one(
                {"_id": run.run_id, "status": "running"},
                {"$set": {"status": "failed", "finished_at": utcnow()}, "$push": {"errors": reason}},
            )
            abandoned.append(run.run_id)
        return abandoned

    def finish(
        self,
        run_id: str,
        *,
        status: str,
        totals: dict[str, int],
        results: list[dict[str, Any]],
        errors: list[str],
        finished_at: datetime | None = None,
    ) -> None:
        update = {
            "status": status,
            "totals": totals,
            "results": results,
            "errors": errors,
            "finished_at": finished_at or utcnow(),
        }
        self._runs.update_one({"_id": run_id}, {"$set": update})

    def get(self, run_id: str) -> CrawlRun:
        row = self._runs.find_one({"_id": run_id})
        if row is None:
            raise NotFound(f"crawl run {run_id!r} does not exist: list runs with CrawlRunRepository.list()")
        return CrawlRun(run_id=row.pop("_id"), **row)

    def latest(self) -> CrawlRun | None:
        rows = list(self._runs.find().sort("started_at", DESCENDING).limit(1))
        return CrawlRun(run_id=rows[0].pop("_id"), **rows[0]) if rows else None

    def list(self, limit: int = 20) -> list[CrawlRun]:
        rows = self._runs.find().sort("started_at", DESCENDING).limit(limit)
        return [CrawlRun(run_id=row.pop("_id"), **row) for row in rows]

    def run_ids_after(self, run: CrawlRun) -> list[str]:
        """Runs that started after ``run`` (the runs whose writes it has not seen)."""
        rows = self._runs.find({"started_at": {"$gt": run.started_at}}, {"_id": 1})
        return [row["_id"] for row in rows]


class ChangeFeed:
    """ "Which documents changed since run R / since time T" for incremental feature runs.

    ``since_run`` is exact: documents whose current revision was written by a run that started
    after R. ``since`` compares revision timestamps (``updated_at``), for callers that keep a clock.
    """

    def __init__(self, db: Database) -> None:
        self._documents = DocumentRepository(db)
        self._runs = CrawlRunRepository(db)
        self._collection = db["documents"]
        self._collection.create_index([("crawl_run_id", ASCENDING)])

    def since(self, when: datetime | None, *, author_id: str | None = None) -> Iterator[StoredDocument]:
        return self._documents.changed_since(when, author_id=author_id)

    def in_runs(self, run_ids: list[str], *, author_id: str | None = None) -> Iterator[StoredDocument]:
        """Documents whose current revision one of ``run_ids`` wrote (new or updated there)."""
        query: dict[str, Any] = {"crawl_run_id": {"$in": list(run_ids)}, **LIVE}
        if author_id:
            query["author_id"] = author_id
        for row in self._collection.find(query).sort("updated_at", ASCENDING):
            yield _from_row(row)

    def in_run(self, run_id: str, *, author_id: str | None = None) -> Iterator[StoredDocument]:
        self._runs.get(run_id)  # one clear line when the run id is wrong
        return self.in_runs([run_id], author_id=author_id)

    def since_run(self, run_id: str, *, author_id: str | None = None) -> Iterator[StoredDocument]:
        later = self._runs.run_ids_after(self._runs.get(run_id))
        return self.in_runs(later, author_id=author_id)

    @contextmanager
    def watch(self, *, author_id: str | None = None, max_await_ms: int = 1000) -> Iterator[Iterator[str]]:
        """Live document ids as they are written (MongoDB change streams; needs a replica set).

        ``with feed.watch() as ids: for document_id in ids: ...`` blocks for new writes; the
        embedded server supports it, a standalone ``mongod`` does not (use ``since_run`` there).
        """
        match: dict[str, Any] = {"operationType": {"$in": ["insert", "replace", "update"]}}
        if author_id:
            match["fullDocument.author_id"] = author_id
        try:
            stream = self._collection.watch(
                [{"$match": match}], full_document="updateLookup", max_await_time_ms=max_await_ms
            )
        except OperationFailure as error:
            reason = str(error).splitlines()[0]
            raise ServiceUnavailable(
                f"this MongoDB has no change streams ({reason}): use ChangeFeed.since_run instead, "
                "or a replica set",
                setting="TWINOPS_MONGODB_URI",
            ) from error
        with stream:
            yield (change["documentKey"]["_id"] for change in stream)
