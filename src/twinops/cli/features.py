"""``twinops features`` and ``twinops lineage``: thin shells around twinops.features."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.tree import Tree

from twinops.cli.common import JSON_HELP, console, err_console, print_json, progress_bars
from twinops.settings import get_settings


def features(
    author: str | None = typer.Option(None, "--author", "-a", help="Only this author (full name)."),
    full: bool = typer.Option(False, "--full", help="Re-process every document, not only changed ones."),
    job_file: str | None = typer.Option(
        None, "--job", help="FeatureJob YAML (cleaning/gates/chunking/embedding settings)."
    ),
    no_feast: bool = typer.Option(False, "--no-feast", help="Skip feast apply + materialize."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Clean, gate, dedup, chunk and embed warehouse documents into Qdrant and Feast.

    Incremental: only documents changed since the last run; --full redoes all.

    A run with nothing new writes nothing.

    Prints the gate report; the HTML copy is in TWINOPS_HOME/features/<version>/.
    """
    from twinops.features.jobs import FeatureJob
    from twinops.features.report import GateReport, gate_table
    from twinops.features.runner import run_features

    job = FeatureJob.from_yaml(Path(job_file)) if job_file else FeatureJob()
    overrides: dict = {"full": full or job.full, "materialize_feast": job.materialize_feast and not no_feast}
    if author:
        overrides["author"] = author
    job = job.model_copy(update=overrides)
    settings = get_settings()

    with (
        progress_bars() as on_progress,
        err_console.status("loading the embedder and opening the stores"),
    ):
        summary = run_features(job, settings, on_progress=on_progress)

    if as_json:
        print_json(summary)
        return
    report = GateReport.model_validate_json(
        Path(summary.report_html).with_name("gate_report.json").read_text()
    )
    report = report.model_copy(update={"run": summary.gate})
    console.print(gate_table(report))
    mode = f"full ({summary.full_reason})" if summary.full else "incremental"
    console.print(f"mode: {mode}; scope: {summary.scope}")
    console.print(
        f"chunks: +{summary.chunks_upserted} upserted, -{summary.chunks_deleted} deleted, "
        f"{summary.chunks_total} total in {summary.chunks_collection}"
        + (" [yellow](alias switched)[/]" if summary.alias_switched else "")
    )
    state = "new" if summary.new_version else "unchanged"
    console.print(f"feature version: {summary.version_id} ({state}) → {summary.artifact_dir}")
    console.print(f"HTML report: {summary.report_html}")
    if summary.feast_materialized:
        console.print(f"Feast: applied and materialized ({settings.feast_online_store} online store)")


def lineage(
    identifier: str = typer.Argument(
        ..., metavar="CHUNK_OR_DATASET_ID", help="Chunk, document or dataset id."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the chain from a chunk (or dataset version) back to its source URLs.

    chunk → feature version (embedder, chunker) → cleaned document → warehouse revision → URL.

    A dataset version walks its parents down to the feature version and lists its sources.
    """
    from twinops.features.lineage import lineage as build_lineage

    result = build_lineage(identifier, get_settings())
    if as_json:
        print_json(result)
        return
    tree = Tree(f"[bold]{identifier}[/]")
    node = tree
    for step in result.steps:
        node = node.add(f"[cyan]{step.kind}[/] {step.id}")
        for key, value in step.details.items():
            if value not in (None, {}, []):
                node.add(f"[dim]{key}:[/] {value}")
    console.print(tree)
    shown = result.source_urls[:20]
    console.print(f"sources ({len(result.source_urls)}):")
    for url in shown:
        console.print(f"  {url}", highlight=False)
    if len(result.source_urls) > len(shown):
        console.print(f"  … and {len(result.source_urls) - len(shown)} more")
