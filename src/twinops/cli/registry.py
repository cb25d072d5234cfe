"""``twinops registry``: the MLflow model registry of twin-llm and twin-reranker, and the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, print_json
from twinops.settings import get_settings

# The metrics worth a column; `--json` has them all.
KEY_METRICS = ("golden_perplexity", "golden_style_score", "golden_judge_accuracy", "golden_mrr", "golden_hit_at_5")

app = typer.Typer(
    name="registry",
    help=(
        "Registered models twin-llm and twin-reranker in MLflow. Each version links to the "
        "dataset versions it was trained on (tag dataset_version_ids). The newest registered "
        "version is `challenger`; `promote` moves `champion` to it only when it beats the "
        "champion on the gate's metrics by the gate's margins, and records why."
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
            f"{k.removeprefix('golden_')}={version.metrics[k]:.4g}" for k in KEY_METRICS if k in version.metrics
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
def promote(
    *,
    name: Annotated[str, typer.Argument(help="Registered model: twin-llm or twin-reranker.")],
    gate: Annotated[
        Path | None,
        typer.Option(
            "--gate", help="Gate YAML with an entry for NAME; default: configs/training/gate.yaml."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Promote `challenger` to `champion` if it passes the gate; the reason is recorded either way."""
    from twinops.training.gate import load_gate
    from twinops.training.gate import promote as promote_version

    gate_config = load_gate(gate, name) if gate else None
    result = promote_version(name, get_settings(), gate_config)
    if as_json:
        print_json(result)
        return
    verdict = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
    console.print(f"{name}: {verdict}; champion is v{result.champion_version}")
    console.print(result.reason, highlight=False)
