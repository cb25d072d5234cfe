"""Options that the ETL job and its sources share: crawl politeness, file caps, and dates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


def _as_utc(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# A date or datetime from YAML or the CLI, always timezone-aware (naive values are taken as UTC).
UtcDatetime = Annotated[
    datetime | None,
    BeforeValidator(lambda value: _as_utc(value) if isinstance(value, date) else value),
    AfterValidator(_as_utc),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CrawlPolicy(_Model):
    """Politeness and robustness limits for HTTP fetching."""

    user_agent: str = "twinops-etl/0.1 (+https://github.com/twinops/twinops)"
    respect_robots: bool = True
    timeout_s: float = Field(20.0, gt=0, description="Connect/read timeout per request.")
    total_timeout_s: float = Field(60.0, gt=0, description="Wall budget per request incl. body.")
    retries: int = Field(2, ge=0, description="Extra attempts on 5xx and timeouts only.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each attempt.")
    max_bytes: int = Field(5_000_000, gt=0, description="Size cap per document; larger ones fail.")
    max_redirects: int = Field(5, ge=0)
    concurrency: int = Field(16, ge=1, description="Requests in flight overall.")
    per_host_concurrency: int = Field(4, ge=1, description="Requests in flight per host.")
    per_host_rate: float = Field(8.0, gt=0, description="Requests per second per host.")


class FileLimits(_Model):
    """Caps for git repositories, export archives and local folders."""

    max_file_bytes: int = Field(512_000, gt=0, description="Larger files are skipped.")
    max_files: int = Field(2000, ge=1, description="At most this many documents per source.")
    clone_timeout_s: float = Field(300.0, gt=0)
    include_source_code: bool = Field(True, description="Git: also collect source files, not only docs.")
