"""``twinops etl``: collect an author's writing into the MongoDB warehouse."""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, print_json, progress
from twinops.errors import ConfigError, TwinopsError
from twinops.etl.jobs import EtlJob, EtlSummary, SourceResult
from twinops.settings import get_settings

EXAMPLES = """
Sources: an article URL, a sitemap or RSS/Atom feed URL, a git URL or local repository, \
a Medium/LinkedIn/Substack export .zip, or a folder of .md/.txt/.html files.

Examples:

  twinops etl --author "Ada Quill" data/demo-corpus

  twinops etl --author "Ada Quill" https://blog.example.org/feed.xml --limit 20 --since 2024-01-01

  twinops etl --config configs/etl/demo.yaml --json

Exit codes: 0 every source was processed (item failures are recorded), 1 every source \
failed, 2 bad input or the warehouse is unreachable.
"""


class EverySourceFailed(TwinopsError):
    """Nothing could be collected: exit 1 (not 2), the reasons are in the summary."""

    exit_code = 1


def _table(summary: EtlSummary) -> Table:
    table = Table(title=f"ETL run {summary.run_id}", title_justify="left")
    for column in ("author", "source", "kind", "new", "updated", "unchanged", "failed", "skipped", "status"):
        table.add_column(column, justify="right" if column in {"new", "updated", "unchanged"} else "left")
    for result in summary.sources:
        status = "[green]ok[/]" if result.status == "ok" else "[red]failed[/]"
        table.add_row(
            result.author,
            result.source,
            result.kind or "?",
            str(result.new),
            str(result.updated),
            str(result.unchanged),
            str(result.failed),
            str(result.skipped),
            status,
        )
    return table


def etl(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Sources to collect (see above).", show_default=False)
    ] = None,
    *,
    author: Annotated[
        str | None, typer.Option("--author", "-a", help="Full name of the author of SOURCES.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML listing authors and their sources (configs/etl/*.yaml)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Feeds/sitemaps: only the newest N articles.")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Feeds/sitemaps: only articles published after this date.", formats=["%Y-%m-%d"]),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Collect an author's writing (web, feeds, git, exports, folders) into the MongoDB warehouse.

    Documents land in `documents`, each run in `crawl_runs`. Unchanged documents are not
    rewritten; changed ones get a new revision (the old one is kept in `document_revisions`).
    """
    from twinops.etl.runner import run_etl

    options = {key: value for key, value in {"limit": limit, "since": since}.items() if value is not None}
    if config is not None:
        if sources or author:
            raise ConfigError("pass either --config or --author with SOURCES, not both")
        job = EtlJob.from_yaml(config)
        if options:  # flags override the config's defaults
            job = EtlJob.model_validate({**job.model_dump(), **options})
    elif author and sources:
        job = EtlJob.for_author(author, list(sources), **options)
    else:
        raise ConfigError('nothing to collect: pass --author "Full Name" SOURCE... or --config FILE')

    total = sum(len(entry.sources) for entry in job.authors)
    settings = get_settings()
    with progress() as bar:
        task = bar.add_task("collecting", total=total)
        stored = {"documents": 0}

        def on_progress(result: SourceResult, finished: bool) -> None:
            if finished:
                bar.advance(task)
                return
            stored["documents"] += 1
            bar.update(task, description=f"collecting ({stored['documents']} items)")

        summary = run_etl(job, settings, on_progress=on_progress)

    if as_json:
        print_json(summary.model_dump(mode="json"))
    else:
        console.print(_table(summary))
        for result in summary.sources:
            if result.status == "failed":
                console.print(
                    f"[red]failed[/] {result.source}: {result.reason}", highlight=False, soft_wrap=True
                )
            elif result.errors:
                first = result.errors[0]
                line = f"[yellow]{len(result.errors)} item(s) failed[/] in {result.source}, first: {first}"
                console.print(line, highlight=False, soft_wrap=True)
        totals = summary.totals
        console.print(
            f"run {summary.run_id}: {totals['new']} new, {totals['updated']} updated, "
            f"{totals['unchanged']} unchanged, {totals['failed']} failed, {totals['skipped']} skipped"
        )
    if summary.all_failed:
        raise EverySourceFailed(
            f"every source of run {summary.run_id} failed (reasons above): fix the sources"
        )


etl.__doc__ = f"{inspect.cleandoc(etl.__doc__ or '')}\n\n{EXAMPLES.strip()}"
