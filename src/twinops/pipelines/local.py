"""``twinops pipeline run-local``: the same pipeline graph on one machine through ``kfp.local``.

Tasks run one at a time as subprocesses of the current Python (``SubprocessRunner(use_venv=False)``)
with the embedded services; outputs land under ``TWINOPS_HOME/kfp`` and the stages' own outputs
under ``TWINOPS_HOME`` as on a cluster. The quantize step hands off to ``.venv-quantize``.

Qdrant local mode locks its folder to one process: this process only probes it (open, close)
before the run, so each task can open it in turn.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twinops.errors import TwinopsError
from twinops.pipelines import params as pipeline_params
from twinops.pipelines.registry import canonical_name, get_pipeline
from twinops.settings import Settings

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PipelineRunFailed(TwinopsError):
    """A task of a local pipeline run failed (its log is printed above the error)."""


class LocalRunResult(BaseModel):
    pipeline: str
    run_dir: str | None = Field(None, description="Where this run's KFP artifacts are.")
    output: Any = None
    reports: list[str] = Field(default_factory=list, description="HTML/Markdown reports of the run.")
    mlflow_ui: str | None = None
    evaluation_report: str | None = Field(None, description="The evaluation's HTML table, if evaluated.")
    registered: list[str] = Field(default_factory=list, description="Model versions and their aliases.")
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


def _newest_run_dir(root: Path, pipeline_name: str, before: set[Path]) -> Path | None:
    candidates = [path for path in root.glob(f"{pipeline_name}-*") if path.is_dir() and path not in before]
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def _reports(run_dir: Path | None) -> list[str]:
    if run_dir is None:
        return []
    found = [path for path in run_dir.rglob("*") if path.is_file() and path.name in {"report", "gate_report"}]
    return sorted(str(path) for path in found)


def _evaluation_report(run_dir: Path | None) -> str | None:
    """The evaluation folder's HTML table (the evaluate step records its folder in the artifact)."""
    import json

    executor_output = run_dir / "evaluate" / "executor_output.json" if run_dir else None
    if executor_output is None or not executor_output.is_file():
        return None
    outputs = json.loads(executor_output.read_text(encoding="utf-8")).get("artifacts", {})
    for artifact in outputs.get("evaluation", {}).get("artifacts", []):
        folder = artifact.get("metadata", {}).get("report_dir")
        if folder and (Path(folder) / "table.html").is_file():
            return str(Path(folder) / "table.html")
    return None


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
) -> LocalRunResult:
    """Run pipeline ``name`` locally with ``raw_params`` (strings, converted to declared types)."""
    from kfp import local

    pipeline_name = canonical_name(name)
    pipeline = get_pipeline(pipeline_name, target="local")
    arguments = pipeline_params.coerce(pipeline, raw_params)
    services = _prepare_environment(settings)

    root = settings.home / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{pipeline.name}-*"))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=enable_caching,
    )
    output: Any = None
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        # Images are cluster-only here; kfp warns about non-"python" image names on every task.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            task = pipeline(**arguments)
        except RuntimeError as error:
            message = _ANSI.sub("", str(error)).strip()
            failed = (
                message.rsplit("Inner task failed:", 1)[-1].strip(" .") if "Inner task" in message else ""
            )
            where = f" at task {failed}" if failed else ""
            raise PipelineRunFailed(
                f"pipeline {pipeline_name} failed{where}: see the task log above (outputs in {root})"
            ) from error
        with contextlib.suppress(AttributeError, KeyError, ValueError):
            output = task.output
    run_dir = _newest_run_dir(root, pipeline.name, before)
    mlflow = services.get("mlflow")
    return LocalRunResult(
        pipeline=pipeline_name,
        run_dir=str(run_dir) if run_dir else None,
        output=output,
        reports=_reports(run_dir),
        mlflow_ui=mlflow if mlflow and mlflow.startswith("http") else None,
        evaluation_report=_evaluation_report(run_dir),
        registered=_registered(settings, run_dir),
        params=arguments,
    )
