"""What every CLI command shares: the console, JSON output and progress bars."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from twinops.domain.progress import ProgressCallback, reporting_to

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

JSON_HELP = "Print the summary as JSON on stdout (machine-readable)."


def print_json(payload: Any) -> None:
    """Plain JSON on stdout (no rich markup), so ``| jq`` works."""

    def _default(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return str(value)

    stream = _json_stream or sys.stdout
    stream.write(json.dumps(payload, indent=2, default=_default) + "\n")
    stream.flush()


_json_stream = None


@contextlib.contextmanager
def json_stdout_only(enabled: bool) -> Iterator[None]:
    """With ``--json``, stdout carries the JSON summary and nothing else: whatever libraries print
    there meanwhile (gptqmodel's start-up banner, which peft's LoRA import pulls in) goes to stderr."""
    global _json_stream  # noqa: PLW0603 - one process, one command
    if not enabled:
        yield
        return
    _json_stream = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stream = None


def progress() -> Progress:
    """A rich progress bar on stderr, so ``--json`` output on stdout stays clean."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    with progress() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextmanager
def progress_bars() -> Iterator[ProgressCallback]:
    """A ``ProgressCallback`` drawing one rich bar per step, installed for ``report`` events too.

    Pass it as ``on_progress`` to parts that take one; parts deep in library loops (the trainers)
    reach it through ``twinops.domain.progress.report``.
    """
    with progress() as bar:
        tasks: dict[str, Any] = {}

        def on_progress(step: str, done: int, total: int | None, note: str = "") -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            description = f"{step} {note}" if note else step
            bar.update(tasks[step], completed=done, total=total, description=description)

        with reporting_to(on_progress):
            yield on_progress
