"""Article extraction in worker processes, so that a page which crashes lxml fails only itself.

trafilatura parses with one module-level lxml parser, and an lxml parser must never be used by two
threads at once: extracting in threads killed whole runs (SIGSEGV, SIGABRT). Here each worker
process extracts one page at a time, and the crawl's threads only send pages and wait. A worker
that dies (a signal, an abort) or overruns ``EXTRACTION_TIMEOUT_S`` fails that page, with the
reason, and is replaced; the run goes on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from twinops.etl.sources.base import Extracted, Extractor, ItemFailed
from twinops.etl.sources.extract import html_to_article

# A page that takes longer is pathological (or its worker hangs): it fails, its worker is replaced.
EXTRACTION_TIMEOUT_S = 120.0
# A worker's start (imports) does not count against a page: it has this long to say it is ready.
WORKER_START_TIMEOUT_S = 120.0
# How often a thread waiting for a busy pool looks whether it was closed meanwhile.
SLOT_WAIT_S = 1.0
# Extraction is CPU work: more workers than cores only queue in the kernel instead of here.
MAX_WORKERS = 4
# Workers fork from a fresh single-threaded server that imported these once (never a fork of the
# crawl's threads, which may copy a held lock): a worker starts in milliseconds, not seconds.
START_METHOD = "forkserver"
PRELOAD = ["twinops.etl.sources.extract", "trafilatura", "trafilatura.metadata"]


def _serve(connection: Connection, extractor: Extractor) -> None:
    """A worker's loop: one page at a time until the pool sends None or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    connection.send("ready")
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        html, url = task
        try:
            reply: tuple[str, Any] = ("ok", extractor(html, url))
        except ItemFailed as error:
            reply = ("failed", str(error))
        except Exception as error:  # MemoryError included: this page fails, the worker goes on
            first_line = str(error).splitlines()[0] if str(error) else ""
            reply = ("failed", f"extraction failed ({type(error).__name__}: {first_line})")
        connection.send(reply)


def _death(process: BaseProcess) -> str:
    """``killed by SIGSEGV`` / ``exited with code 1`` for a worker that is gone."""
    process.join(timeout=5)
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(eq=False)  # identity: a set of live workers
class _Worker:
    process: BaseProcess
    connection: Connection
    _hang_up_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _hung_up: bool = False

    def hang_up(self) -> None:
        """Close our end of the pipe once, whichever thread comes first: ``close`` and a page whose
        worker it stopped race here, and a second close would close whatever file has taken the
        descriptor's number meanwhile (it raised EBADF, and lost the page's outcome)."""
        with self._hang_up_lock:
            if not self._hung_up:
                self._hung_up = True
                self.connection.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)
        self.hang_up()


class ExtractionPool:
    """Up to ``workers`` long-lived processes running ``extractor``; ``extract`` is thread safe.

    Workers start on first use (a run of git repositories and Markdown never starts one). Use it
    as a context manager: leaving stops them.
    """

    def __init__(
        self,
        extractor: Extractor = html_to_article,
        *,
        workers: int | None = None,
        timeout_s: float = EXTRACTION_TIMEOUT_S,
    ) -> None:
        self._extractor = extractor
        self._timeout_s = timeout_s
        self._context = multiprocessing.get_context(START_METHOD)
        self._context.set_forkserver_preload(PRELOAD)  # no effect once the server runs: harmless
        size = workers or max(1, min(MAX_WORKERS, os.cpu_count() or 1))
        # Each slot holds an idle worker, or None: permission to start one.
        self._slots: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(size):
            self._slots.put(None)
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child_end, self._extractor), name="twinops-extract", daemon=True
        )
        process.start()
        child_end.close()  # the worker's end lives in the worker: EOF here once it dies
        worker = _Worker(process, parent_end)
        with self._lock:
            self._workers.add(worker)
        try:
            ready = parent_end.poll(WORKER_START_TIMEOUT_S) and parent_end.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            reason = self._lose(worker, free_slot=False)  # the caller frees it
            raise ItemFailed(f"an extraction worker did not start ({reason})")
        return worker

    def _lose(self, worker: _Worker, *, free_slot: bool = True) -> str:
        """Stop a worker that died or hung, free its slot, and say what happened to it."""
        if worker.process.is_alive():
            worker.process.kill()
        reason = _death(worker.process)
        worker.hang_up()
        with self._lock:
            self._workers.discard(worker)
        if free_slot:
            self._slots.put(None)
        return reason

    def _next_slot(self) -> _Worker | None:
        """An idle worker or a free slot, waiting while all are busy (but not past ``close``)."""
        while True:
            if self._closed:
                raise ItemFailed("the run's extraction pool was closed before this page")
            try:
                return self._slots.get(timeout=SLOT_WAIT_S)
            except queue.Empty:
                continue

    def _handed_the_page(self, html: str | bytes, url: str | None) -> _Worker:
        """A worker that has taken the page (one that died while idle is replaced, not blamed)."""
        for _attempt in range(3):
            worker = self._next_slot()
            if worker is None:
                try:
                    worker = self._start()
                except BaseException:
                    self._slots.put(None)
                    raise
            try:
                worker.connection.send((html, url))
            except OSError:
                self._lose(worker)
                continue
            return worker
        raise ItemFailed("no extraction worker stayed up to take the page")

    def extract(self, html: str | bytes, url: str | None = None) -> Extracted:
        """The page's article, extracted in a worker; ItemFailed when it has none or crashed."""
        if self._closed:
            raise RuntimeError("the extraction pool is closed")
        worker = self._handed_the_page(html, url)
        try:
            answered = worker.connection.poll(self._timeout_s)
            status, payload = worker.connection.recv() if answered else ("", None)
        except (EOFError, OSError) as error:
            raise ItemFailed(f"extraction crashed ({self._lose(worker)})") from error
        except BaseException:
            self._lose(worker)  # in an unknown state: never handed out again, its slot freed
            raise
        if not answered:
            raise ItemFailed(f"extraction took longer than {self._timeout_s:.0f}s ({self._lose(worker)})")
        self._slots.put(worker)
        if status == "ok":
            return payload
        raise ItemFailed(payload)

    def close(self) -> None:
        """Stop every worker (idle ones are asked to, stragglers are killed)."""
        self._closed = True
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            worker.stop()
