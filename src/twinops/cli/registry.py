"""``twinops registry``: the MLflow model registry of twin-llm and twin-reranker, and the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.settings import get_settings

# The metrics worth a column; `--json` has them all.
KEY_METRICS = (
    "golden_perplexity",
    "golden_style_score",
    "golden_judge_accuracy",
    "golden_mrr",
    "golden_hit_at_5",
)

app = typer.Typer(
    name="registry",
    help=(
        "Registered models twin-llm and twin-reranker in MLflow. Each version links to the "
        "dataset versions it was trained on (tag dataset_version_ids). `gate` nominates a version "
        "(it takes `challenger`) only when it beats the champion on the gate's metrics by the "
        "gate's margins, and records why; a release (a canary that passed, `twinops rollout`) "
        "moves `champion`; `promote` is the manual override, recorded as such."
    ),
    no_args_is_help=True,
)


@app.command("list")
def list_(
    *,
    name: Annotated[str | None, typer.Option("--name", help="Only this registered model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List model versions: aliases, dataset versions, key metrics (`--json`: all, with folders)."""
    from twinops.infra.registry import MODEL_NAMES, list_versions

    versions = list_versions(get_settings(), (name,) if name else MODEL_NAMES)
    if as_json:
        print_json(versions)
        return
    table = Table("model", "version", "aliases", "dataset versions", "metrics")
    for version in versions:
        metrics = ", ".join(
            f"{k.removeprefix('golden_')}={version.metrics[k]:.4g}"
            for k in KEY_METRICS
            if k in version.metrics
        )
        table.add_row(
            version.name,
            version.version,
            ", ".join(version.aliases),
            ", ".join(version.dataset_version_ids),
            metrics,
        )
    console.print(table if versions else "no registered model versions yet")


@app.command()
def gate(
    *,
    name: Annotated[
        str | None,
        typer.Argument(help="Registered model: twin-llm or twin-reranker; default: each registered one."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="The version to judge; default: the newest.")
    ] = None,
    gate_file: Annotated[
        Path | None,
        typer.Option("--gate", help="Gate YAML with an entry for NAME; default: configs/training/gate.yaml."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Nominate a version (it takes `challenger`) if it passes the gate; the reason is recorded either way.

    The gate never moves `champion`: a release does (`twinops rollout start --model-uri
    models:/NAME@challenger`, after a canary), or `twinops registry promote` by hand.
    """
    from twinops.errors import NotFound
    from twinops.infra.registry import MODEL_NAMES
    from twinops.training.gate import load_gate, nominate

    settings = get_settings()
    results = []
    for model_name in (name,) if name else MODEL_NAMES:
        gate_config = load_gate(gate_file, model_name) if gate_file else None
        try:
            results.append((model_name, nominate(model_name, settings, gate_config, version=version)))
        except NotFound as missing:
            if name:  # asked for by name: its absence is the answer
                raise
            err_console.print(f"{model_name}: skipped ({missing})", highlight=False)
    if not results:
        raise NotFound(
            f"no registered model to gate ({', '.join(MODEL_NAMES)}): train and register one "
            "(`twinops train dpo --register`, `twinops train reranker --register`)"
        )
    if as_json:
        print_json(results[0][1] if name else dict(results))
        return
    for model_name, result in results:
        verdict = "[green]nominated[/]" if result.nominated else "[yellow]not nominated[/]"
        holder = f"v{result.champion_version}" if result.champion_version else "none yet"
        console.print(f"{model_name} v{result.version}: {verdict}; champion: {holder}")
        console.print(result.reason, highlight=False)


@app.command()
def promote(
    *,
    name: Annotated[str, typer.Argument(help="Registered model: twin-llm or twin-reranker.")],
    version: Annotated[str, typer.Option("--version", help="The version that takes `champion`.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record (required).")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """The manual override: move `champion` to VERSION now, without a canary, recorded as such.

    The release path is a canary (`twinops rollout start`), whose promote moves `champion`; use
    this when a person decides instead. The version is tagged `champion.manual` with the reason,
    and loses `challenger`. A serving spec pinned to a version does not change by itself: roll
    the new version out, or edit the InferenceService.
    """
    from twinops.training.gate import promote_by_hand

    result = promote_by_hand(name, version, get_settings(), reason=reason)
    if as_json:
        print_json(result)
        return
    console.print(result.reason, highlight=False)
