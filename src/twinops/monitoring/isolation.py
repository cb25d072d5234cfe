"""The fitted detectors in a process of their own, so that testing a batch never waits for the GIL.

The online detector parses deliveries on its event loop while a full batch is tested. In one
process the two share the GIL: the detectors' Python between numpy calls waits for the loop at
every switch interval, and measured here one batch took 7x longer with a thread parsing beside it.
``DetectorsProcess`` holds the spaces' detectors in one child process (spawned, not forked: torch
and OpenMP do not survive a fork) and tests batches there; the server's process only parses, queues
and acts on verdicts.

The detectors travel once, at start, with cloudpickle (alibi-detect's LSDD keeps a lambda, which
pickle refuses); then each batch is one message on a pipe each way. A ``ProcessPoolExecutor`` was
tried first: its feeder and manager threads cost about 5 ms a batch (a sixth of a 32-row test).
A child that dies testing a batch fails that batch (``DetectorsProcessDied``, the delivery gets a
500) and a new child is started for the next one; a batch that finds the child already dead is
tested by the new one. The child ends when the server's process does (its pipe closes).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
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
    or ``("error", exception)`` until the pipe closes."""
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
            space, embeddings = connection.recv()
        except (EOFError, OSError):  # the server's process is gone
            return
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


class DetectorsProcess:
    """``predict(space, embeddings)`` of ``SpaceDetectors`` in a child process; a context manager."""

    def __init__(
        self, spaces: dict[str, SpaceDetectors], *, threads: int = 1, start_timeout: float = 300.0
    ) -> None:
        """``threads``: the child's BLAS/OpenMP/torch threads. One by default: a 32-row batch gains
        nothing from more here (measured), and the server's process needs a core of its own to parse."""
        import cloudpickle

        self._serialized = cloudpickle.dumps(spaces)
        self._threads = threads
        self._start_timeout = start_timeout
        self._lock = threading.Lock()  # one batch on the pipe at a time
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, self._serialized, self._threads), daemon=True
        )
        self._process.start()
        child_end.close()  # the child's end lives in the child only: its death closes the pipe
        # Loaded now, so that a server reporting ready tests its first batch at once.
        if not self._connection.poll(self._start_timeout):
            self._process.kill()
            raise DetectorsProcessDied(
                f"the drift detectors' process did not start in {self._start_timeout} s"
            )
        try:
            self._connection.recv()
        except EOFError as error:
            raise DetectorsProcessDied("the drift detectors' process died while starting") from error

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def predict(self, space: str, embeddings: np.ndarray) -> list[DriftResult]:
        with self._lock:
            if not self._process.is_alive():  # died before this batch reached it: a new one tests it
                self._restart()
            try:
                self._connection.send((space, embeddings))
                status, value = self._connection.recv()
            except (EOFError, OSError) as error:
                self._restart()
                raise DetectorsProcessDied(
                    f"the drift detectors' process died testing a batch of {len(embeddings)} rows "
                    f"of {space!r}; a new one tests the next batches"
                ) from error
        if status == "error":
            raise value
        return value

    def _restart(self) -> None:
        logger.warning("the drift detectors' process died: starting a new one")
        self._stop()
        self._start()

    def _stop(self) -> None:
        self._connection.close()  # the child's recv ends, and so does the child
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> DetectorsProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
