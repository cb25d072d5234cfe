"""What component bodies share: settings, pointer artifacts, metrics and reports.

Heavy outputs (features, datasets, model folders) live under TWINOPS_HOME, which is the shared
``twinops-home`` PVC on a cluster and the local folder under ``kfp.local``. A KFP ``Dataset`` or
``Model`` artifact is a small JSON *pointer* to them (path relative to TWINOPS_HOME, version ids,
MLflow run), mirrored into the artifact's metadata so the Kubeflow Pipelines UI shows it and the
next step finds the folder without copying gigabytes through the artifact store.

Component bodies import this module inside the function (the KFP executor runs only the function
source), so keep it light: no torch or heavy imports at module level.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from twinops.errors import NotFound
from twinops.settings import Settings, get_settings

POINTER_SCHEMA = "twinops.pointer/v1"


def component_settings() -> Settings:
    """Settings as the step's environment defines them (ConfigMap/Secret on a cluster)."""
    get_settings.cache_clear()
    return get_settings()


def _relative_to_home(path: Path, settings: Settings) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(settings.home).as_posix()
    except ValueError:
        return str(path)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_pointer(
    artifact: Any, *, kind: str, path: Path | str | None, settings: Settings, **info: Any
) -> dict:
    """Write ``artifact.path`` as a pointer to ``path`` (under TWINOPS_HOME) plus ``info``."""
    pointer = {"schema": POINTER_SCHEMA, "kind": kind, **_jsonable(info)}
    if path is not None:
        pointer["path"] = _relative_to_home(Path(path), settings)
    target = Path(artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(pointer, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for key, value in pointer.items():
        # Metadata must be JSON scalars/lists/dicts; the UI lists these next to the artifact.
        artifact.metadata[key] = value
    return pointer


def read_pointer(artifact: Any) -> dict:
    """The pointer an upstream step wrote (file first, metadata as fallback)."""
    target = Path(artifact.path)
    if target.is_file():
        pointer = json.loads(target.read_text(encoding="utf-8"))
    else:
        pointer = {key: value for key, value in dict(artifact.metadata).items() if not key.startswith("_")}
    if pointer.get("schema") != POINTER_SCHEMA:
        raise NotFound(f"artifact {artifact.uri} is not a twinops pointer: wire it from a twinops component")
    return pointer


def pointer_path(pointer: dict, settings: Settings) -> Path:
    """The absolute folder a pointer names, resolved against this step's TWINOPS_HOME."""
    if not pointer.get("path"):
        raise NotFound(f"pointer of kind {pointer.get('kind')} names no path: the upstream step wrote none")
    return settings.under_home(pointer["path"])


def flatten_numbers(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number (and bool) of ``values``; nested dicts flattened with '.'."""
    flat: dict[str, float] = {}
    for key, value in sorted(values.items()):
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, prefix=f"{name}."))
        elif isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(value)):
            flat[name] = float(value)
    return flat


def log_metrics(metrics: Any, values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Log the numbers of ``values`` as KFP scalar metrics (the UI's metrics tab)."""
    flat = flatten_numbers(values, prefix)
    for name, value in flat.items():
        metrics.log_metric(name, value)
    return flat


def write_text(artifact: Any, text: str) -> None:
    target = Path(artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def markdown_table(title: str, rows: dict[str, Any]) -> str:
    """A small Markdown report: a title and a two-column table (the UI renders it)."""
    lines = [f"# {title}", "", "| key | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines) + "\n"


def markdown_rows(text: str) -> dict[str, str]:
    """The rows of a ``markdown_table`` report back as ``key -> value``."""
    rows = {}
    for line in text.splitlines()[4:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ", 1)]
        if len(cells) == 2:  # key and value
            rows[cells[0]] = cells[1]
    return rows


def html_page(title: str, body_html: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body_html}</body></html>\n"
    )


def copy_report(artifact: Any, source: Path | str | None, *, title: str, fallback: dict[str, Any]) -> None:
    """Copy an HTML report a stage wrote into an HTML artifact, or render ``fallback`` as a table."""
    if source is not None and Path(source).is_file():
        write_text(artifact, Path(source).read_text(encoding="utf-8"))
        return
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in fallback.items()
    )
    write_text(artifact, html_page(title, f"<h1>{html.escape(title)}</h1><table>{rows}</table>"))


def summary_dict(summary: Any) -> dict[str, Any]:
    """A pydantic summary (or anything JSON-able) as plain JSON data."""
    if hasattr(summary, "model_dump"):
        return summary.model_dump(mode="json")
    return _jsonable(summary)


def dataset_versions(version_ids: dict[str, str], settings: Settings) -> dict[str, Any]:
    """The DatasetVersion records for ``kind -> id`` (from the warehouse), keyed by kind."""
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    repository = DatasetVersionRepository(connect(settings))
    return {kind: repository.get(version_id) for kind, version_id in version_ids.items()}


def model_pointer_info(result: Any) -> dict[str, Any]:
    """A training result's fields for a model pointer (the folder itself goes in ``path``)."""
    data = summary_dict(result)
    return {key: value for key, value in data.items() if key not in {"model_dir", "registered"}}


def write_trained_model(
    result: Any, *, model: Any, metrics: Any, report: Any, title: str, settings: Settings, **info: Any
) -> str:
    """A training step's outputs: the model pointer (the result's fields, ``info`` over them), its
    metrics, a report table; returns what the step returns (the MLflow run id, else the run name)."""
    info = {**model_pointer_info(result), **info}
    write_pointer(model, kind="llm", path=result.model_dir, settings=settings, **info)
    logged = log_metrics(metrics, dict(result.metrics))
    write_text(report, markdown_table(title, {**info, **logged}))
    return str(result.mlflow_run_id or result.run_name)
