"""Data collection (ETL): crawl an author's writing from the web, feeds, git, exports and folders
into the MongoDB warehouse. ``run_etl(job, settings)`` is the stage; the CLI and KFP wrap it."""

from twinops.etl.jobs import (
    AuthorSources,
    CrawlPolicy,
    EtlJob,
    EtlSummary,
    FileLimits,
    SourceResult,
)
from twinops.etl.runner import run_etl
from twinops.etl.sources import SOURCE_KINDS, SourceSpec

__all__ = [
    "SOURCE_KINDS",
    "AuthorSources",
    "CrawlPolicy",
    "EtlJob",
    "EtlSummary",
    "FileLimits",
    "SourceResult",
    "SourceSpec",
    "run_etl",
]
