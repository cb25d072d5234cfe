"""``twinops datasets``: build the training datasets from the latest feature run, and inspect them."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, err_console, print_json, progress_bars
from twinops.domain.progress import duration, progress_lines
from twinops.settings import get_settings

app = typer.Typer(
    name="datasets",
    help=(
        "Training datasets from the author's chunks: instruction (back-translation), preference "
        "(author vs. base model), a held-out golden set with a canary, and reranker pairs. Each is "
        "a versioned Hugging Face dataset under TWINOPS_HOME/datasets/, recorded in MongoDB and MLflow."
    ),
    no_args_is_help=True,
)

TRAINING_KINDS = ("instruction", "preference", "golden", "reranker")


@app.command("build")
def build(
    *,
    author: Annotated[
        str | None, typer.Option("--author", help="Only this author's chunks (full name).")
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            help="local = the base LLM offline (default); openai = TWINOPS_GENERATOR_URL/MODEL/API_KEY; "
            "extractive = deterministic rules (tests, dry runs).",
        ),
    ] = None,
    job_file: Annotated[
        Path | None, typer.Option("--job", help="A DatasetJob YAML file; flags override it.")
    ] = None,
    features_version: Annotated[
        str | None,
        typer.Option("--features-version", help="FEATURES dataset version id (default: the latest run)."),
    ] = None,
    max_chunks: Annotated[
        int | None, typer.Option("--max-chunks", min=1, help="Use only the first N chunks.")
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            help="Generator time in all (90s, 10m, 1h; default 5m): once spent, the remaining rows come "
            "from the templates, so the build always ends. 0: templates only.",
        ),
    ] = None,
    paraphrased_questions: Annotated[
        Path | None,
        typer.Option(
            "--paraphrased-questions",
            help="JSONL of questions people wrote about the corpus in their own words, one object a line: "
            '{"document": FILE, "question": TEXT, "evidence": QUOTE of the answering passage} '
            "(the demo's: data/demo-questions.jsonl). Held-out ones are scored apart "
            "(golden_paraphrased_*); the rest train the twin and the reranker.",
        ),
    ] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log the build to MLflow.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Build the datasets from the latest feature run (run `twinops features` first).

    Same inputs give the same dataset version ids: re-running on an unchanged corpus writes nothing new.
    """
    from pydantic import ValidationError

    from twinops.datasets import DatasetJob, build_datasets
    from twinops.errors import ConfigError, first_problem

    job = DatasetJob.from_yaml(job_file) if job_file else DatasetJob()
    overrides = {
        "author": author,
        "generator": generator,
        "features_version": features_version,
        "max_chunks": max_chunks,
        "budget": budget,
        "paraphrased_questions": str(paraphrased_questions) if paraphrased_questions else None,
    }
    updates = {key: value for key, value in overrides.items() if value is not None}
    if no_mlflow:
        updates["log_to_mlflow"] = False
    try:
        job = DatasetJob.model_validate({**job.model_dump(), **updates})
    except ValidationError as error:
        problem = first_problem(error)
        option = "--" + problem.where.split(".")[0].replace("_", "-") if problem.where else "job"
        raise ConfigError(f"invalid {option}: {problem.message}") from error

    with ExitStack() as stack:
        # Bars on a terminal; plain lines every few seconds when stderr goes to a file or a pipe.
        if err_console.is_terminal:
            on_progress = stack.enter_context(progress_bars())
        else:
            on_progress = progress_lines(lambda line: print(line, file=sys.stderr, flush=True))
        summary = build_datasets(job, get_settings(), on_progress=on_progress)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"datasets from {summary.features_version} ({summary.generator})")
    for column in ("kind", "version", "train", "test", "new"):
        table.add_column(column)
    for kind, version in summary.versions.items():
        sizes = summary.split_sizes.get(kind, {})
        table.add_row(
            kind,
            version,
            str(sizes.get("train", "-")),
            str(sizes.get("test", "-")),
            "yes" if version in summary.new_versions else "no",
        )
    console.print(table)
    console.print(
        f"{summary.chunks} chunks from {summary.documents} documents, "
        f"{summary.golden_documents} held out for the golden set"
    )
    for kind in summary.sources:
        console.print(f"{kind} by source: {summary.sources_line(kind)}")
    console.print(f"generator time: {duration(summary.generator_seconds)}")
    if summary.drops:
        console.print("dropped: " + ", ".join(f"{reason} {count}" for reason, count in summary.drops.items()))
    if summary.mlflow_run_id:
        console.print(f"MLflow run: {summary.mlflow_run_id}")


@app.command("show")
def show(
    version: Annotated[
        str, typer.Argument(help="A dataset version id, or `latest` for the newest of each training kind.")
    ] = "latest",
    *,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show a dataset version: kind, split sizes, lineage parents and where its files are."""
    from twinops.domain import DatasetKind
    from twinops.errors import NotFound
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    repository = DatasetVersionRepository(connect(get_settings()))
    if version == "latest":
        versions = [repository.latest(DatasetKind(kind)) for kind in TRAINING_KINDS]
        versions = [found for found in versions if found is not None]
        if not versions:
            raise NotFound("no training dataset exists yet: run `twinops datasets build`")
    else:
        versions = [repository.get(version)]
    if as_json:
        print_json([found.model_dump(mode="json") | {"id": found.id} for found in versions])
        return
    for found in versions:
        table = Table(title=found.id, show_header=False)
        table.add_column("field")
        table.add_column("value")
        table.add_row("kind", found.kind.value)
        table.add_row("name", found.name)
        table.add_row("created", found.created_at.isoformat(timespec="seconds"))
        table.add_row("splits", ", ".join(f"{k} {v}" for k, v in found.stats.get("splits", {}).items()))
        table.add_row("parents", "\n".join(found.parents))
        table.add_row("uri", found.uri or "-")
        if "canary" in found.config:
            table.add_row("canary", found.config["canary"])
        console.print(table)


@app.command("feedback")
def feedback(
    *,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            help="Only feedback given after this date (UTC).",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        ),
    ] = None,
    base: Annotated[
        str,
        typer.Option("--base", help="Preference version whose rows come along (id or `latest`)."),
    ] = "latest",
    feedback_only: Annotated[
        bool, typer.Option("--feedback-only", help="Only the pairs from feedback, no base rows.")
    ] = False,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log the build to MLflow.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Turn rated RAG answers into a new preference dataset (the data flywheel).

    Pairs: an edited answer over the logged one; for one question, an answer rated 4-5 over one rated 1-2.
    The feedback and request ids go into the version's lineage.
    """
    from twinops.datasets.feedback import build_feedback_preferences

    summary = build_feedback_preferences(
        get_settings(), since=since, base=None if feedback_only else base, log_to_mlflow=not no_mlflow
    )
    if as_json:
        print_json(summary)
        return
    console.print(
        f"{summary.version} ({'new' if summary.new else 'unchanged'}): {summary.edited_pairs} pairs from "
        f"edited answers, {summary.rated_pairs} from ratings, out of {summary.feedback} feedback on "
        f"{summary.requests} requests"
    )
    if summary.base:
        console.print(
            f"with the rows of {summary.base} (train {summary.base_rows.get('train', 0)}, "
            f"test {summary.base_rows.get('test', 0)})"
        )
    console.print(
        ", ".join(f"{split} {size}" for split, size in summary.split_sizes.items()) + f" at {summary.uri}"
    )
    if summary.drops:
        console.print("dropped: " + ", ".join(f"{reason} {count}" for reason, count in summary.drops.items()))
    if summary.mlflow_run_id:
        console.print(f"MLflow run: {summary.mlflow_run_id}")
