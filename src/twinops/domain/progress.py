"""Progress events: a lower part says how far a step has got; the Face (cli) decides how to show it.

Two ways to report, one shape (``ProgressCallback``: step name, done, total or None, and a short
note such as the latest loss):

- a part that takes an ``on_progress`` argument calls it (the feature pipeline does);
- a part deep inside a library loop (a Trainer callback) calls ``report(...)``, which goes to the
  reporter the Face installed with ``reporting_to(callback)`` for the duration of a command, and
  nowhere when none is installed (a pipeline pod stays quiet).

One-line notices (``notice``: "caching the bundled model ... (first use)") go the same way: to the
callback the Face installed with ``noticing_to``, else to the ``twinops`` logger (a pod's log).

Nothing here draws: rich bars live in ``twinops.cli.common``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class ProgressCallback(Protocol):
    """``step`` names what advances (the same name each call); ``note`` is its latest figure."""

    def __call__(self, step: str, done: int, total: int | None, note: str = "") -> None: ...


_reporter: ContextVar[ProgressCallback | None] = ContextVar("twinops_progress_reporter", default=None)


@contextmanager
def reporting_to(callback: ProgressCallback) -> Iterator[ProgressCallback]:
    """Send every ``report`` inside the block to ``callback``."""
    token = _reporter.set(callback)
    try:
        yield callback
    finally:
        _reporter.reset(token)


def reporting() -> bool:
    """Whether a reporter is installed (a part may skip work that only feeds progress)."""
    return _reporter.get() is not None


def report(step: str, done: int, total: int | None = None, note: str = "") -> None:
    """Tell the installed reporter, if any, that ``step`` has ``done`` of ``total`` units."""
    callback = _reporter.get()
    if callback is not None:
        callback(step, done, total, note)


_notifier: ContextVar[Callable[[str], None] | None] = ContextVar("twinops_notifier", default=None)


@contextmanager
def noticing_to(callback: Callable[[str], None]) -> Iterator[None]:
    """Send every ``notice`` inside the block to ``callback``."""
    token = _notifier.set(callback)
    try:
        yield
    finally:
        _notifier.reset(token)


def notice(message: str) -> None:
    """A one-line notice for the user: to the Face's callback, else the ``twinops`` logger."""
    callback = _notifier.get()
    if callback is not None:
        callback(message)
    else:
        logging.getLogger("twinops").warning(message)
