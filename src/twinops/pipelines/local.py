"""``twinops pipeline run``: the same pipeline graph on one machine through ``kfp.local``.

Tasks run one at a time as subprocesses of the current Python (``SubprocessRunner(use_venv=False)``)
with the embedded services; outputs land under ``TWINOPS_HOME/kfp`` and the stages' own outputs
under ``TWINOPS_HOME`` as on a cluster. The quantize step hands off to ``.venv-quantize``.

kfp.local prints every task's log and its executor's JSON to stdout. ``run_local`` takes that
stream instead (``StepLogs``): each step's lines go to ``TWINOPS_HOME/logs/<run>/<step>.log`` and all
of them to ``pipeline.log`` beside; the caller hears ``StepEvent``s (started, latest log line,
succeeded with its duration and key figures, failed with the tail of its log) and decides how to
show them. ``echo=True`` copies the full stream to stderr as well (``--verbose``).

Qdrant local mode locks its folder to one process: this process only probes it (open, close)
before the run, so each task can open it in turn.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import math
import os
import re
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, Field

from twinops.errors import TwinopsError
from twinops.pipelines import params as pipeline_params
from twinops.pipelines.registry import canonical_name, get_pipeline
from twinops.settings import Settings

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# kfp.local's own lines that frame a task (after the ANSI colours are stripped).
_TASK_STARTED = re.compile(r"Executing task '([^']+)'")
_TASK_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# The last line of a Python traceback: "package.module.SomeError: message" -> SomeError, message.
_EXCEPTION_LINE = re.compile(r"^(?:\w+\.)*(\w*(?:Error|Exception|Exit|Interrupt)\w*): (.+)$")
TAIL_LINES = 15  # of a failed step's log, shown with the error

OUTPUT = "Output"  # a step's return value (an id), shown without a label
# The metrics that say most about each step, in order; a step not listed shows its first few.
KEY_FIGURES: dict[str, tuple[str, ...]] = {
    "ingest": ("new", "updated", "unchanged", "failed"),
    "clean-and-gate": ("processed", "kept", "deleted"),
    "chunk-embed-load": ("chunks_total", "chunks_upserted", "documents_total"),
    "feast-materialize": ("authors", "documents"),
    "build-datasets": ("instruction.train", "preference.train", "golden.test", "reranker.train"),
    "dapt": ("train_loss", "passage_test_perplexity"),
    "sft": ("train_loss", "instruction_test_perplexity"),
    "dpo": ("train_loss", "eval_rewards/accuracies"),
    "quantize-local": ("perplexity_ratio", "linear_size_ratio"),
    "quantize": ("perplexity_ratio", "linear_size_ratio"),
    "train-reranker": ("train_loss", "val_mrr"),
    # twin-llm*: the author's twin, whatever its name (twin-llm, twin-llm-<author>).
    "evaluate": ("twin-llm*.golden_perplexity", "twin-reranker.golden_mrr", "twin-reranker.golden_hit_at_5"),
    "register-and-gate": ("twin-llm*.version", "twin-llm*.nominated", "twin-reranker.nominated"),
    "fit-drift-reference": (OUTPUT,),
}
FALLBACK_FIGURES = 3


class PipelineRunFailed(TwinopsError):
    """A step of a local pipeline run failed: the step, its log's path and the log's last lines."""

    exit_code = 1  # the step's own failure; a user-fixable setting fails before the run (exit 2)

    def __init__(self, message: str, *, step: str | None = None, tail: list[str]):
        super().__init__(message)
        self.step, self.tail = step, tail


class StepEvent(BaseModel):
    """What a local run tells its caller about one step."""

    step: str
    state: Literal["started", "running", "succeeded", "failed"]
    seconds: float = 0.0
    note: str = Field("", description="running: the latest log line; succeeded: the key figures.")


class StepResult(BaseModel):
    step: str
    succeeded: bool
    seconds: float
    figures: str = ""
    log: str


def _figure(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _numbers(artifacts: list[dict]) -> dict[str, float]:
    return {
        name: value
        for artifact in artifacts
        for name, value in artifact.get("metadata", {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def read_executor_output(path: Path) -> dict[str, Any]:
    """A step's ``executor_output.json`` (its output parameters and artifacts), ``{}`` if unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def key_figures(step: str, executor_output: Path) -> str:
    """``name value`` pairs from the step's outputs (``executor_output.json``): the step's listed
    figures from any output artifact's metadata (its Metrics first), else its first few metrics."""
    executed = read_executor_output(executor_output)
    outputs = executed.get("artifacts", {})
    metrics = _numbers(outputs.get("metrics", {}).get("artifacts", []))
    found = {
        **_numbers([artifact for output in outputs.values() for artifact in output.get("artifacts", [])]),
        **metrics,
    }
    returned = executed.get("parameterValues", {}).get(OUTPUT)
    if isinstance(returned, str):
        found[OUTPUT] = returned
    chosen = {
        name: found[name]
        for pattern in KEY_FIGURES.get(step, ())
        for name in sorted(fnmatch.filter(found, pattern))
    }
    if not chosen:
        chosen = {name: metrics[name] for name in sorted(metrics)[:FALLBACK_FIGURES]}
    return ", ".join(
        value if name == OUTPUT else f"{name} {_figure(value)}" for name, value in chosen.items()
    )


class StepLogs(io.TextIOBase):
    """A text stream in place of stdout during a run: splits kfp.local's output into step logs.

    Lines between kfp's "Executing task 'X'" and "Task 'X' finished" go to ``X.log``; every line
    goes to ``pipeline.log``. ``on_event`` hears each step start, its log lines (as ``running``) and
    its end; key figures come from the step's executor output under ``kfp_root``.
    """

    def __init__(
        self,
        folder: Path,
        kfp_root: Path,
        on_event: Callable[[StepEvent], None] | None = None,
        echo: TextIO | None = None,
        *,
        run_prefix: str = "",
    ) -> None:
        super().__init__()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.kfp_root, self.on_event, self.echo = folder, kfp_root, on_event, echo
        self.all = (folder / "pipeline.log").open("w", encoding="utf-8")
        self.step: str | None = None
        self.step_file: TextIO | None = None
        self.started = 0.0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.steps: list[StepResult] = []
        self.failed: StepResult | None = None
        self._partial = ""
        self._run_glob = f"{run_prefix}*"
        self._runs_before = set(kfp_root.glob(self._run_glob))
        self._run: Path | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        if self.all.closed:
            return
        self.all.flush()
        if self.step_file is not None:
            self.step_file.flush()
        if self.echo is not None:
            self.echo.flush()

    def close(self) -> None:
        if self._partial:
            self._line(_ANSI.sub("", self._partial))
            self._partial = ""
        self._end_step(None)
        self.all.close()
        super().close()

    def _emit(self, event: StepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _line(self, line: str) -> None:
        self.all.write(line + "\n")
        if started := _TASK_STARTED.search(line):
            self._end_step(None)
            self.step, self.started = started.group(1), time.monotonic()
            # Open for the step's lifetime: _end_step closes it.
            self.step_file = Path(self._log_path(self.step)).open("w", encoding="utf-8")  # noqa: SIM115
            self.tail.clear()
            self._emit(StepEvent(step=self.step, state="started"))
            return
        if (finished := _TASK_FINISHED.search(line)) and finished.group(1) == self.step:
            self._end_step(finished.group(2) == "SUCCESS")
            return
        if self.step_file is None:
            return
        self.step_file.write(line + "\n")
        if text := line.strip():
            self.tail.append(line.removeprefix("    "))
            self._emit(StepEvent(step=self.step or "", state="running", note=text, seconds=self._elapsed()))

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _log_path(self, step: str) -> str:
        return str(self.folder / f"{step}.log")

    def run_dir(self) -> Path | None:
        """This run's folder under the KFP root: the newest one kfp made since the stream began
        (looked for until kfp has made it, then kept: it does not change during a run)."""
        if self._run is None:
            made = set(self.kfp_root.glob(self._run_glob)) - self._runs_before
            runs = [path for path in made if path.is_dir()]
            self._run = max(runs, key=lambda path: path.stat().st_mtime, default=None)
        return self._run

    def _executor_output(self, step: str) -> Path | None:
        run = self.run_dir()
        output = run / step / "executor_output.json" if run is not None else None
        return output if output is not None and output.is_file() else None

    def _end_step(self, succeeded: bool | None) -> None:
        """Close the current step; ``succeeded`` None means the stream ended before kfp said."""
        if self.step is None or self.step_file is None:
            return
        self.step_file.close()
        step, seconds = self.step, self._elapsed()
        self.step, self.step_file = None, None
        output = self._executor_output(step) if succeeded else None
        figures = key_figures(step, output) if output is not None else ""
        result = StepResult(
            step=step, succeeded=bool(succeeded), seconds=seconds, figures=figures, log=self._log_path(step)
        )
        self.steps.append(result)
        if not succeeded:
            self.failed = result
        state = "succeeded" if succeeded else "failed"
        self._emit(StepEvent(step=step, state=state, seconds=seconds, note=figures))


class LocalRunResult(BaseModel):
    pipeline: str
    run_dir: str | None = Field(None, description="Where this run's KFP artifacts are.")
    logs_dir: str | None = Field(None, description="pipeline.log and one <step>.log per step.")
    steps: list[StepResult] = Field(default_factory=list)
    output: Any = None
    reports: list[str] = Field(default_factory=list, description="HTML/Markdown reports of the run.")
    mlflow_ui: str | None = None
    evaluation_report: str | None = Field(None, description="The evaluation's HTML table, if evaluated.")
    registered: list[str] = Field(default_factory=list, description="Model versions and their aliases.")
    decisions: dict[str, str] = Field(
        default_factory=dict, description="The registry gate's decision and reason per model version."
    )
    params: dict[str, Any] = Field(default_factory=dict)


def _prepare_environment(settings: Settings) -> dict[str, str]:
    """Start the embedded services and export what every task subprocess must agree on."""
    from twinops.services.manager import ServiceManager

    services = ServiceManager(settings).up()
    os.environ["TWINOPS_HOME"] = str(settings.home)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not settings.qdrant_url:
        _probe_qdrant(settings)
    return {name: record.uri for name, record in services.items()}


def _probe_qdrant(settings: Settings) -> None:
    """Fail early, in one line, when another process holds the Qdrant folder; then let go of it."""
    from twinops.infra.qdrant import open_qdrant

    with open_qdrant(settings):
        pass


def _reports(run_dir: Path | None) -> list[str]:
    if run_dir is None:
        return []
    found = [path for path in run_dir.rglob("*") if path.is_file() and path.name in {"report", "gate_report"}]
    return sorted(str(path) for path in found)


def _evaluation_report(run_dir: Path | None) -> str | None:
    """The evaluation folder's HTML table (the evaluate step records its folder in the artifact)."""
    if run_dir is None:
        return None
    outputs = read_executor_output(run_dir / "evaluate" / "executor_output.json").get("artifacts", {})
    for artifact in outputs.get("evaluation", {}).get("artifacts", []):
        folder = artifact.get("metadata", {}).get("report_dir")
        if folder and (Path(folder) / "table.html").is_file():
            return str(Path(folder) / "table.html")
    return None


def _decisions(run_dir: Path | None) -> dict[str, str]:
    """``{"twin-llm v3": "champion: ..."}`` from the register-and-gate report of this run."""
    from twinops.pipelines.artifacts import markdown_rows

    report = run_dir / "register-and-gate" / "report" if run_dir else None
    if report is None or not report.is_file():
        return {}
    return {name: value.replace("**", "") for name, value in markdown_rows(report.read_text("utf-8")).items()}


def _registered(settings: Settings, run_dir: Path | None) -> list[str]:
    """``name vN [aliases]`` for the registry, when this run reached register-and-gate."""
    if run_dir is None or not (run_dir / "register-and-gate").is_dir():
        return []
    from twinops.training.registry import list_versions

    return [
        f"{version.name} v{version.version} [{', '.join(version.aliases) or 'no alias'}]"
        for version in list_versions(settings)
    ]


def run_local(
    name: str,
    raw_params: dict[str, str],
    settings: Settings,
    *,
    enable_caching: bool = False,
    on_event: Callable[[StepEvent], None] | None = None,
    echo: bool = False,
) -> LocalRunResult:
    """Run pipeline ``name`` locally with ``raw_params`` (strings, converted to declared types).

    Step logs go to files (see the module docstring); ``on_event`` hears each step, ``echo`` copies
    the full stream to stderr. A failed step raises ``PipelineRunFailed`` with its log's tail.
    """
    from kfp import local

    pipeline_name = canonical_name(name)
    pipeline = get_pipeline(pipeline_name, target="local")
    arguments = pipeline_params.coerce(pipeline, raw_params)
    services = _prepare_environment(settings)

    root = settings.home / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    logs = StepLogs(
        settings.home / "logs" / f"{pipeline.name}-{stamp}",
        root,
        on_event,
        sys.stderr if echo else None,
        run_prefix=f"{pipeline.name}-",
    )
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=enable_caching,
    )
    output: Any = None
    failure: RuntimeError | None = None
    with warnings.catch_warnings(), contextlib.redirect_stdout(logs):
        # Images are cluster-only here; kfp warns about non-"python" image names on every task.
        warnings.simplefilter("ignore", RuntimeWarning)
        # Resource requests and limits are for the cluster; kfp.local says so about every task.
        warnings.filterwarnings("ignore", r"Task '.*': settings .* have no effect", UserWarning)
        try:
            task = pipeline(**arguments)
            with contextlib.suppress(AttributeError, KeyError, ValueError):
                output = task.output
        except RuntimeError as error:
            failure = error
        finally:
            logs.close()
    if failure is not None:
        raise _failed(pipeline_name, failure, logs) from failure
    run_dir = logs.run_dir()
    mlflow = services.get("mlflow")
    return LocalRunResult(
        pipeline=pipeline_name,
        run_dir=str(run_dir) if run_dir else None,
        logs_dir=str(logs.folder),
        steps=logs.steps,
        output=output,
        reports=_reports(run_dir),
        mlflow_ui=mlflow if mlflow and mlflow.startswith("http") else None,
        evaluation_report=_evaluation_report(run_dir),
        registered=_registered(settings, run_dir),
        decisions=_decisions(run_dir),
        params=arguments,
    )


def _failed(pipeline_name: str, error: RuntimeError, logs: StepLogs) -> PipelineRunFailed:
    """The failed step (from the logs; kfp's message names it too), its log's tail and path."""
    failed = logs.failed
    if failed is None:
        message = _ANSI.sub("", str(error)).strip()
        inner = message.rsplit("Inner task failed:", 1)[-1].strip(" .") if "Inner task" in message else ""
        where = f" at step {inner}" if inner else ""
        return PipelineRunFailed(
            f"pipeline {pipeline_name} failed{where}: {message.splitlines()[-1] if message else error!r} "
            f"(full log: {logs.folder / 'pipeline.log'})",
            tail=list(logs.tail),
        )
    raised = (_EXCEPTION_LINE.match(line.strip()) for line in reversed(logs.tail))
    reason = next((f" ({found.group(1)}: {found.group(2)})" for found in raised if found), "")
    return PipelineRunFailed(
        f"pipeline {pipeline_name} failed at step {failed.step} after {failed.seconds:.0f}s{reason}: "
        f"its log is {failed.log}",
        step=failed.step,
        tail=list(logs.tail),
    )
