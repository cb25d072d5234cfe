"""What every CLI command shares: the console, JSON output and progress bars."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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

from twinops.domain.progress import ProgressCallback, duration, reporting_to

if TYPE_CHECKING:
    from twinops.pipelines.local import LocalRunResult, PipelineRunFailed, StepEvent

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


VERBOSE_HELP = "Stream every step's full log to stderr (they always go to files under TWINOPS_HOME/logs)."
STEP_COLUMN = 22  # wide enough for the longest step name (chunk-embed-load, register-and-gate)
NOTE_WIDTH = 70  # of a running step's latest log line beside its spinner


@contextmanager
def pipeline_steps(*, verbose: bool = False) -> Iterator[Any]:
    """An ``on_event`` for ``run_local``: one line per finished step (duration, key figures) on
    stderr, and while a step runs, a spinner with its elapsed time and latest log line. With
    ``verbose`` the full logs stream instead of the spinner."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    running: dict[str, Any] = {}
    # A spinner only where someone watches it; logs (CI, `make run > file`) get the step lines alone.
    live = not verbose and err_console.is_terminal

    def on_event(event: StepEvent) -> None:
        if event.state == "started" and live:
            running[event.step] = bar.add_task(event.step)
        elif event.state == "running" and event.step in running:
            note = event.note if len(event.note) <= NOTE_WIDTH else event.note[: NOTE_WIDTH - 1] + "…"
            bar.update(running[event.step], description=f"{event.step:<{STEP_COLUMN}} {note}")
        elif event.state in {"succeeded", "failed"}:
            if event.step in running:
                bar.remove_task(running.pop(event.step))
            mark, what = ("✓", event.note) if event.state == "succeeded" else ("✗", "failed")
            line = f"{mark} {event.step:<{STEP_COLUMN}} {duration(event.seconds):>7}  {what}"
            bar.console.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)

    if not live:
        yield on_event
        return
    with bar:
        yield on_event


def print_step_failure(error: PipelineRunFailed) -> None:
    """The failed step's last log lines (the one-line error itself is printed by ``main``)."""
    if error.tail:
        err_console.rule(f"last lines of {error.step or 'the run'}'s log", style="red")
        for line in error.tail:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        err_console.rule(style="red")


def print_run_summary(result: LocalRunResult) -> None:
    """What a person ran the pipeline for: the evaluation table, the registry's decisions and
    where the UI, reports and logs are."""
    table = Path(result.evaluation_report).with_name("table.md") if result.evaluation_report else None
    if table is not None and table.is_file():
        for line in table.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                console.rule(line.removeprefix("# "))
            elif line.startswith("## "):
                console.print(line.removeprefix("## ") + ":", markup=False, highlight=False)
            elif line.strip() and not line.startswith("- "):  # the notes are in the HTML report
                console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.decisions:
        console.rule("registry")
        for version, decision in result.decisions.items():
            console.print(f"{version}: {decision}", markup=False, highlight=False, soft_wrap=True)
    console.rule(f"{result.pipeline}: done")
    where = [
        ("MLflow UI", result.mlflow_ui),
        ("evaluation report", result.evaluation_report),
        ("step reports", f"{result.run_dir}/<step>/" if result.run_dir else None),
        ("step logs", result.logs_dir),
    ]
    for label, value in where:
        if value:
            console.print(f"{label + ':':<20}{value}", markup=False, highlight=False, soft_wrap=True)
