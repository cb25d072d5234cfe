"""The fitted detectors in a process of their own, so that testing a batch never waits for the GIL.

The online detector parses deliveries on its event loop while a full batch is tested. In one
process the two share the GIL: the detectors' Python between numpy calls waits for the loop at
every switch interval, and measured here one batch took 7x longer with a thread parsing beside it.
``DetectorsProcess`` holds the spaces' detectors in one child process (spawned, not forked: torch
and OpenMP do not survive a fork) and tests batches there; the server's process only parses, queues
and acts on verdicts.

The detectors travel once, at start, with cloudpickle (alibi-detect's LSDD keeps a lambda, which
pickle refuses); then each batch is one message on a pipe each way, and the batches of concurrent
deliveries wait in the pipe while one is tested. A ``ProcessPoolExecutor`` was tried first: its
feeder and manager threads cost about 5 ms a batch (a sixth of a 32-row test).
A child that dies testing a batch fails that batch (``DetectorsProcessDied``, the delivery gets a
500) and a new child is started for the next one; a batch that finds the child already dead is
tested by the new one. The child ends when the server's process does (its pipe closes).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import sys
import threading
from collections import deque
from concurrent.futures import Future
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np

from twinops.errors import ServiceUnavailable
from twinops.infra.memory import keep_freed_memory
from twinops.monitoring.detectors import DriftResult, SpaceDetectors

logger = logging.getLogger(__name__)


def _serve(connection: Connection, serialized: bytes, threads: int) -> None:
    """The child: adopt the detectors, then answer ``(space, embeddings)`` with ``("ok", results)``
    or ``("error", exception)`` until the pipe closes or ``None`` comes."""
    import cloudpickle
    from joblib import parallel_config
    from threadpoolctl import threadpool_limits

    keep_freed_memory()  # a test's temporaries are reused, not faulted in again at every batch
    # sklearn's pairwise distances (evidently's MMD) run their loops in this process, as joblib
    # would anyway in a multiprocessing child (it says so in a warning at every call): for a 32-row
    # batch its worker processes cost more than they save.
    parallel_config(backend="sequential")  # set at construction: the whole child's default
    spaces: dict[str, SpaceDetectors] = cloudpickle.loads(serialized)
    # A first test loads what the detectors import lazily (evidently, scipy's BLAS, torch): seconds
    # the first delivery would otherwise wait, and libraries the thread limits must already see.
    for space, detectors in spaces.items():
        try:
            detectors.predict(np.zeros((2, detectors.dimension), np.float32))
        except Exception as error:  # a detector that needs more rows: it warms up on its first batch
            logger.info("warming up the %r detectors: %s", space, error)
    threadpool_limits(threads)  # BLAS and OpenMP pools, as loaded by the detectors' libraries
    if "torch" in sys.modules:  # alibi-detect's torch backend keeps a pool of its own
        sys.modules["torch"].set_num_threads(threads)
    connection.send(("ready", sorted(spaces)))
    while True:
        try:
            batch = connection.recv()
        except (EOFError, OSError):  # the server's process is gone
            return
        if batch is None:  # the server stops this process
            return
        space, embeddings = batch
        try:
            reply: tuple[str, Any] = ("ok", spaces[space].predict(embeddings))
        except Exception as error:  # the caller raises it: a bad batch, not a dead process
            reply = ("error", error)
        try:
            connection.send(reply)
        except Exception as error:  # an exception that does not pickle
            connection.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))


class DetectorsProcessDied(ServiceUnavailable):
    """The child process died while testing a batch (that batch is lost; the next one gets a new
    child), or did not start (``twinops drift serve`` says so in one line)."""


class _Child:
    """One child process and the replies it owes, in the order the batches were sent (the child
    tests them one after another). A thread reads the replies, so that the child already holds the
    next batch when it finishes one, rather than waiting for the server's process to take the reply
    and send again: measured here it idled an eighth of the time that way, behind the GIL of a
    process busy parsing."""

    def __init__(self, serialized: bytes, threads: int, start_timeout: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end, serialized, threads), daemon=True)
        self.process.start()
        child_end.close()  # the child's end lives in the child only: its death closes the pipe
        # Loaded now, so that a server reporting ready tests its first batch at once.
        if not self.connection.poll(start_timeout):
            self.process.kill()
            self.connection.close()
            raise DetectorsProcessDied(f"the drift detectors' process did not start in {start_timeout} s")
        try:
            self.connection.recv()
        except EOFError as error:
            self.connection.close()
            raise DetectorsProcessDied("the drift detectors' process died while starting") from error
        self.owed: deque[tuple[Future, str, int]] = deque()  # (reply, space, rows) per batch sent
        self.reader = threading.Thread(target=self._read_replies, name="detectors-replies", daemon=True)
        self.reader.start()

    def send(self, space: str, embeddings: np.ndarray) -> Future:
        """Queue a batch (the caller holds the process's lock: batches are sent one at a time)."""
        reply: Future = Future()
        self.owed.append((reply, space, len(embeddings)))  # before sending: the reply may come at once
        with contextlib.suppress(OSError):  # the child is gone: its reader fails what it owes, this too
            self.connection.send((space, embeddings))
        return reply

    def _read_replies(self) -> None:
        while True:
            try:
                message = self.connection.recv_bytes()
            except (EOFError, OSError):  # the child died or was stopped
                break
            try:
                status, value = pickle.loads(message)  # noqa: S301 - our own child, as recv() would
            except Exception as error:  # a reply this process cannot load fails its batch alone
                status, value = "error", error
            reply, _, _ = self.owed.popleft()
            if status == "error":
                reply.set_exception(value)
            else:
                reply.set_result(value)
        while self.owed:  # a dead child's batches are lost: their deliveries fail, the next are retried
            reply, space, rows = self.owed.popleft()
            reply.set_exception(
                DetectorsProcessDied(
                    f"the drift detectors' process died testing a batch of {rows} rows of {space!r}; "
                    "a new one tests the next batches"
                )
            )

    def stop(self) -> None:
        """End the child: it exits at the ``None`` sent after the batches it holds (their replies
        still reach their callers), or when the pipe closes; killed if it does not."""
        with contextlib.suppress(OSError):  # already dead
            self.connection.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.reader.join(timeout=10)
        self.connection.close()


class DetectorsProcess:
    """``predict(space, embeddings)`` of ``SpaceDetectors`` in a child process; a context manager.

    ``submit`` sends a batch and returns its future, so that several callers' batches wait in the
    child's pipe, tested one after another; ``predict`` waits for it."""

    def __init__(
        self, spaces: dict[str, SpaceDetectors], *, threads: int = 1, start_timeout: float = 300.0
    ) -> None:
        """``threads``: the child's BLAS/OpenMP/torch threads. One by default: a 32-row batch gains
        nothing from more here (measured), and the server's process needs a core of its own to parse."""
        import cloudpickle

        self._serialized = cloudpickle.dumps(spaces)
        self._threads = threads
        self._start_timeout = start_timeout
        self._lock = threading.Lock()  # one batch written to the pipe at a time; the child's restarts
        self._child = self._start()

    def _start(self) -> _Child:
        return _Child(self._serialized, self._threads, self._start_timeout)

    @property
    def pid(self) -> int | None:
        return self._child.process.pid

    def submit(self, space: str, embeddings: np.ndarray) -> Future:
        """The future of the batch's ``DriftResult`` list: ``DetectorsProcessDied`` when the child
        dies before answering it, the detectors' own exception for a bad batch."""
        with self._lock:
            if not self._child.process.is_alive():  # died before this batch reached it: a new one tests it
                logger.warning("the drift detectors' process died: starting a new one")
                self._child.stop()  # its reader fails the batches the dead child held
                self._child = self._start()
            return self._child.send(space, embeddings)

    def predict(self, space: str, embeddings: np.ndarray) -> list[DriftResult]:
        return self.submit(space, embeddings).result()

    def close(self) -> None:
        with self._lock:
            self._child.stop()

    def __enter__(self) -> DetectorsProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
