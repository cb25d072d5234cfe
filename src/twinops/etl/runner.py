"""``run_etl``: every source of every author, concurrently, into the warehouse, with a run record.

One failing source never stops the others: each source runs in its own task and any failure
becomes a one-line reason on its ``SourceResult``. Nor does a failing page: articles are extracted
in worker processes (``twinops.etl.workers``), so a page that crashes its parser fails alone.

A warehouse that stops answering does stop the run, at the first write that finds it gone: every
later write would wait its server-selection timeout in vain, one document after another. The run
then ends in one ``ServiceUnavailable`` line; its record, which cannot be written then, stays
``running`` until the next run's start marks it failed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from twinops.domain import Author, RawDocument
from twinops.domain.documents import utcnow
from twinops.errors import ServiceUnavailable
from twinops.etl.http import Fetcher, FetchError
from twinops.etl.jobs import EtlJob, EtlSummary, ItemStatus, SourceResult
from twinops.etl.sources import Source, SourceContext, SourceFailed
from twinops.etl.sources.base import MAX_RECORDED_ERRORS, Extractor
from twinops.etl.sources.extract import html_to_article
from twinops.etl.workers import ExtractionPool
from twinops.infra.crawl_runs import CrawlRunRepository
from twinops.infra.documents import AuthorRepository, DocumentRepository, UpsertOutcome
from twinops.infra.mongo import connect, unreachable
from twinops.settings import Settings

log = logging.getLogger(__name__)

# Called after every item and once more (finished=True) when a source is done.
ProgressCallback = Callable[[SourceResult, bool], None]


def new_run_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"etl-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


# The most documents one warehouse write takes (``DocumentRepository.upsert_many``).
WRITE_BATCH = 64


class WarehouseSink:
    """Upserts each document whole (one atomic MongoDB write) and counts outcomes per source.

    Writes are group commits: while one batch is written (in a worker thread), the documents the
    concurrent fetches deliver queue up and go together in the next, in one read and one insert
    (one journal wait) instead of two round trips each. A document alone is written at once.
    """

    def __init__(
        self,
        result: SourceResult,
        documents: DocumentRepository,
        run_id: str,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.result = result
        self._documents = documents
        self._run_id = run_id
        self._on_progress = on_progress
        self.seen: set[str] = set()  # every document the source still has, changed or not
        self._queued: list[tuple[RawDocument, asyncio.Future[UpsertOutcome]]] = []
        self._writing = False

    def _record(self, item: str, reason: str) -> None:
        if len(self.result.errors) < MAX_RECORDED_ERRORS:
            self.result.errors.append(f"{item}: {reason}" if item not in reason else reason)

    def _tick(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.result, False)

    async def add(self, document: RawDocument) -> None:
        await self.add_many([document])

    async def add_many(self, documents: list[RawDocument]) -> None:
        """Write the documents (in batches of ``WRITE_BATCH``) and count each one's outcome; the
        warehouse gone ends it at the first document that finds it so, as ``add`` does."""
        loop = asyncio.get_running_loop()
        queued = [(document, loop.create_future()) for document in documents]
        self._queued += queued
        if not self._writing:  # else the write in progress takes them in its next batches
            await self._write_queued()
        for document, future in queued:
            await self._settle(document, future)

    async def _settle(self, document: RawDocument, future: asyncio.Future[UpsertOutcome]) -> None:
        try:
            outcome = await future
        except ConnectionFailure as error:  # the warehouse is gone, not this document's fault
            raise unreachable(error, "the warehouse") from error
        except PyMongoError as error:
            self.fail(document.source_url, f"warehouse write failed ({type(error).__name__}: {error})")
            return
        self.seen.add(document.id)
        self.result.count(ItemStatus(outcome.value))
        self._tick()

    async def _write_queued(self) -> None:
        """Write what is queued, batch after batch, until nothing is; each document's future gets
        its outcome or its error."""
        self._writing = True
        batch: list[tuple[RawDocument, asyncio.Future[UpsertOutcome]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[:WRITE_BATCH], self._queued[WRITE_BATCH:]
                for (_, future), outcome in zip(batch, await self._write(batch), strict=True):
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                batch = []
        finally:
            self._writing = False
            for _, future in batch + self._queued:  # cancelled mid-write: nobody writes them now
                future.cancel()
            self._queued = []

    async def _write(
        self, batch: list[tuple[RawDocument, asyncio.Future[UpsertOutcome]]]
    ) -> list[UpsertOutcome | PyMongoError]:
        documents = [document for document, _ in batch]
        # pymongo blocks: a worker thread keeps fetches flowing meanwhile.
        try:
            return await asyncio.to_thread(
                self._documents.upsert_many, documents, self._run_id, source=self.result.source
            )
        except ConnectionFailure as error:  # the warehouse is gone: every document of the batch fails
            return [error] * len(batch)
        except PyMongoError as error:
            if len(batch) == 1:
                return [error]
        # One document's error must not fail the others: each alone, with its own outcome or error.
        return [await self._write_one(document) for document in documents]

    async def _write_one(self, document: RawDocument) -> UpsertOutcome | PyMongoError:
        try:
            return await asyncio.to_thread(
                self._documents.upsert, document, self._run_id, source=self.result.source
            )
        except PyMongoError as error:
            return error

    def fail(self, item: str, reason: str) -> None:
        self.result.count(ItemStatus.FAILED)
        self._record(item, reason)
        self._tick()

    def skip(self, item: str, reason: str | None = None) -> None:
        self.result.skipped += 1
        if reason and "robots.txt" in reason:  # a politeness refusal is worth telling the user
            self._record(item, reason)
        self._tick()


def _complete(result: SourceResult, context: SourceContext) -> bool:
    """Whether the crawl saw the whole source: then a document it did not meet is gone from it.

    Not after a failed or skipped item (it may exist and be unreachable now), nor with ``limit``
    or ``since`` (they leave documents out on purpose).
    """
    return (
        result.status == "ok"
        and result.failed == 0
        and result.skipped == 0
        and context.limit is None
        and context.since is None
    )


async def _run_one(
    author: Author,
    *,
    spec: Source,
    job: EtlJob,
    fetcher: Fetcher,
    extract: Extractor,
    documents: DocumentRepository,
    run_id: str,
    on_progress: ProgressCallback | None,
) -> SourceResult:
    result = SourceResult(author=author.full_name, source=spec.source)
    started = time.perf_counter()
    sink = WarehouseSink(result, documents, run_id, on_progress)
    context = SourceContext(author, spec, job, fetcher, extract)
    try:
        context.spec = spec.resolved(job)
        result.kind = context.spec.kind
        await context.spec.collect(context, sink)
        if _complete(result, context):
            try:
                gone = documents.live_ids_from(spec.source, author_id=author.id) - sink.seen
                result.deleted = await asyncio.to_thread(documents.mark_deleted, gone, run_id)
            except ConnectionFailure as error:  # gone after the last write: the run ends all the same
                raise unreachable(error, "the warehouse") from error
    except (SourceFailed, FetchError) as error:
        result.reason = str(error)
    except ServiceUnavailable:  # the warehouse is gone: the run ends
        raise
    except Exception as error:  # a bug in one source must not sink the run; keep it visible
        log.exception("source %s failed unexpectedly", spec.source)
        first_line = str(error).splitlines()[0] if str(error) else ""
        result.reason = f"unexpected {type(error).__name__}: {first_line}"
    if result.status == "failed" and result.reason is None:
        result.reason = result.errors[0] if result.errors else "nothing collected"
    result.seconds = round(time.perf_counter() - started, 3)
    if on_progress is not None:
        on_progress(result, True)
    return result


async def _run_all(
    job: EtlJob,
    documents: DocumentRepository,
    run_id: str,
    on_progress: ProgressCallback | None,
    extractor: Extractor,
) -> list[SourceResult]:
    with ExtractionPool(extractor) as pool:
        async with Fetcher(job.crawl) as fetcher:
            tasks = [
                _run_one(
                    Author(full_name=entry.full_name),
                    spec=spec,
                    job=job,
                    fetcher=fetcher,
                    extract=pool.extract,
                    documents=documents,
                    run_id=run_id,
                    on_progress=on_progress,
                )
                for entry in job.authors
                for spec in entry.sources
            ]
            return list(await asyncio.gather(*tasks))


def _run_coroutine(coroutine_factory: Callable[[], object]) -> list[SourceResult]:
    """``asyncio.run``, or a helper thread when the caller already runs a loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine_factory())  # type: ignore[arg-type]
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine_factory())  # type: ignore[arg-type]
        except BaseException as error:  # re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="twinops-etl")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def run_etl(
    job: EtlJob,
    settings: Settings,
    *,
    on_progress: ProgressCallback | None = None,
    extractor: Extractor = html_to_article,
) -> EtlSummary:
    """Collect every source of ``job`` into the warehouse and record the run in ``crawl_runs``.

    Raises ServiceUnavailable when MongoDB is unreachable (before anything is fetched, or at the
    first write that finds it gone); every other problem is recorded per source in the returned
    summary. ``extractor`` turns a page into
    its article in the worker processes (a module-level function: the workers import it).
    """
    db = connect(settings)
    try:
        return _run_with(db, job, on_progress, extractor)
    finally:
        db.client.close()  # the run owns its connection: no monitor threads left behind


def _run_with(
    db: Database, job: EtlJob, on_progress: ProgressCallback | None, extractor: Extractor
) -> EtlSummary:
    documents = DocumentRepository(db)
    runs = CrawlRunRepository(db)
    authors = AuthorRepository(db)
    for entry in job.authors:
        authors.upsert(Author(full_name=entry.full_name))
    run_id = new_run_id()
    sources = [f"{entry.full_name}: {spec.source}" for entry in job.authors for spec in entry.sources]
    run = runs.start(run_id, sources)
    results: list[SourceResult] = []
    warehouse_gone = False
    try:
        results = _run_coroutine(lambda: _run_all(job, documents, run_id, on_progress, extractor))
    except ServiceUnavailable:
        warehouse_gone = True  # the record cannot be written now; the next run's start fails it
        raise
    finally:
        summary = EtlSummary(run_id=run_id, started_at=run.started_at, finished_at=utcnow(), sources=results)
        if not warehouse_gone:
            runs.finish(
                run_id,
                # "failed": the run crashed (no results) or every source failed.
                status="failed" if not results or summary.all_failed else "finished",
                totals=summary.totals,
                results=[result.model_dump(mode="json") for result in results],
                errors=[f"{r.source}: {r.reason}" for r in results if r.status == "failed"],
                finished_at=summary.finished_at,
            )
    return summary
