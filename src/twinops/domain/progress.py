"""Progress events: a lower part says how far a step has got; the Face (cli) decides how to show it.

Two ways to report, one shape (``ProgressCallback``: step name, done, total or None, and a short
note such as the latest loss):

- a part that takes an ``on_progress`` argument calls it (the feature pipeline does);
- a part deep inside a library loop (a Trainer callback) calls ``report(...)``, which goes to the
  reporter the Face installed with ``reporting_to(callback)`` for the duration of a command, and
  nowhere when none is installed (a pipeline pod stays quiet).

One-line notices (``notice``: "caching the bundled model ... (first use)") go the same way: to the
callback the Face installed with ``noticing_to``, else to the ``twinops`` logger (a pod's log).

Nothing here draws: rich bars live in ``twinops.cli.common``; ``progress_lines`` turns the events
into plain log lines, at most one per step every few seconds, for a pod's log or a redirected CLI.
"""

from __future__ import annotations

import logging
import math
import re
import time
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


def duration(seconds: float) -> str:
    """``1m05s``, or ``4.2s`` under a minute."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """``"10m"`` → 600.0; units ms, s, m, h, combinable (``1h30m``); a bare number is seconds.

    Raises ValueError, naming the accepted forms, for anything else or a negative duration.
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        cleaned = text.strip().lower()
        parts = _DURATION_PART.findall(cleaned)
        try:
            seconds = float(cleaned)
        except ValueError:
            if not parts or "".join(number + unit for number, unit in parts) != cleaned:
                raise ValueError(f"{text!r} is not a duration such as 90s, 10m, 1h or 1h30m") from None
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} must be a duration of zero or more seconds")
    return seconds


def progress_lines(
    write: Callable[[str], None],
    *,
    every_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> ProgressCallback:
    """A ``ProgressCallback`` writing ``step: done/total note`` lines: a step's first and last
    event always, others when ``every_seconds`` have passed since that step's previous line."""
    last_line: dict[str, float] = {}

    def on_progress(step: str, done: int, total: int | None, note: str = "") -> None:
        now = clock()
        finished = total is not None and done >= total
        if step in last_line and not finished and now - last_line[step] < every_seconds:
            return
        last_line[step] = now
        count = f"{done}/{total}" if total is not None else str(done)
        write(f"{step}: {count}" + (f" ({note})" if note else ""))

    return on_progress
