# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The ingest component: crawl an author's sources into the MongoDB warehouse."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def ingest(
    author: str,
    crawl: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
    sources: list = ["data/demo-corpus"],
    limit: int = 0,
    options: dict = {},
) -> str:
    """Crawl an author's sources (web pages, feeds, sitemaps, git, exports, folders) into MongoDB.

    Calls ``twinops.etl.runner.run_etl``: new and changed documents are upserted into the
    warehouse (``documents`` with their revisions), unchanged ones are skipped by content hash.
    Fails when every source failed, so a broken crawl never feeds an empty corpus downstream.

    Args:
        author: Full name of the author whose writing is collected.
        sources: Source strings: URLs, feed or sitemap URLs, git URLs, export .zip paths or
            folders (relative paths resolve against the working directory of the image).
        limit: Default cap on articles per feed or sitemap; 0 means no cap.
        options: Extra ``EtlJob`` fields as a mapping (e.g. ``{"crawl": {"concurrency": 4}}``).
        crawl: Pointer to the crawl run (run id, author, per-outcome totals).
        metrics: Documents new, updated, unchanged, failed and skipped.
        report: Per-source table of outcomes and failure reasons.

    Returns:
        The crawl run id.
    """
    from twinops.errors import TwinopsError
    from twinops.etl.jobs import EtlJob
    from twinops.etl.runner import run_etl
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import validate_job

    settings = artifacts.component_settings()
    fields = {"authors": [{"full_name": author, "sources": [str(source) for source in sources]}]}
    job = validate_job(EtlJob, {**fields, **({"limit": limit} if limit else {}), **dict(options)})
    summary = run_etl(job, settings)
    totals = dict(summary.totals)
    artifacts.write_pointer(
        crawl, kind="crawl", path=None, settings=settings, run_id=summary.run_id, author=author, totals=totals
    )
    artifacts.log_metrics(metrics, totals)
    rows = {
        f"{result.source}": f"{result.status}: new {result.new}, updated {result.updated}, "
        f"unchanged {result.unchanged}, failed {result.failed}"
        + (f" ({result.reason})" if result.reason else "")
        for result in summary.sources
    }
    artifacts.write_text(report, artifacts.markdown_table(f"Crawl {summary.run_id} for {author}", rows))
    if summary.all_failed:
        raise TwinopsError(f"every source of {author} failed: see the crawl report of run {summary.run_id}")
    return summary.run_id
