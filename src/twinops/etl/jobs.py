"""The ETL job (what to collect, for whom, how politely) and its summary, buildable from YAML.

A config lists authors and their sources, one source string per line::

    authors:
      - full_name: Ada Quill
        sources:
          - data/demo-corpus                       # local folder
          - https://blog.example.org/sitemap.xml   # expands to its articles
          - source: https://example.org/feed.xml   # a source with its own options
            limit: 20
            since: 2024-01-01

Relative local paths resolve against ``base_dir`` (default: the config file's folder).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from twinops.infra.config_files import read_yaml_mapping, validate_config


class SourceKind(StrEnum):
    """What a source string points at; the dispatcher picks one."""

    WEB = "web"
    FEED = "feed"  # RSS or Atom
    SITEMAP = "sitemap"
    GIT = "git"
    EXPORT = "export"  # Medium / LinkedIn / Substack .zip
    FOLDER = "folder"


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


class SourceSpec(_Model):
    """One source string plus per-source options (all optional)."""

    source: str = Field(min_length=1, description="URL, git URL, local path, or export .zip.")
    kind: SourceKind | None = Field(None, description="Force a kind instead of dispatching on the string.")
    limit: int | None = Field(None, ge=1, description="Feeds/sitemaps: at most this many articles.")
    since: UtcDatetime = Field(None, description="Feeds/sitemaps: only articles published after.")
    site_url: str | None = Field(
        None, description="Substack exports: the publication URL, so posts get their real URLs."
    )


class AuthorSources(_Model):
    full_name: str = Field(min_length=1)
    sources: list[SourceSpec] = Field(min_length=1)

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_sources(cls, value: Any) -> Any:
        # A bare string is the common case in configs: ``- https://...``.
        if isinstance(value, list):
            return [{"source": item} if isinstance(item, str) else item for item in value]
        return value


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


class EtlJob(_Model):
    """Everything one ETL run needs; ``run_etl(job, settings)`` executes it."""

    authors: list[AuthorSources] = Field(min_length=1)
    limit: int | None = Field(None, ge=1, description="Default feed/sitemap limit for every source.")
    since: UtcDatetime = Field(None, description="Default feed/sitemap cut-off for every source.")
    base_dir: Path | None = Field(None, description="Where relative local paths resolve (default cwd).")
    crawl: CrawlPolicy = Field(default_factory=CrawlPolicy)
    files: FileLimits = Field(default_factory=FileLimits)

    @classmethod
    def for_author(cls, full_name: str, sources: list[str], **options: Any) -> EtlJob:
        """The job of ``twinops etl --author NAME SOURCE...``."""
        return cls.model_validate({"authors": [{"full_name": full_name, "sources": sources}], **options})

    @classmethod
    def from_yaml(cls, path: str | Path) -> EtlJob:
        """Load a config; relative ``base_dir`` and local paths resolve against the file's folder."""
        path = Path(path)
        raw = read_yaml_mapping(path, what="ETL config", shape="a mapping with an `authors:` list")
        # The handbook's configs nest everything under ``parameters:``; accept both shapes.
        raw = raw.get("parameters", raw) if "authors" not in raw else raw
        folder = path.resolve().parent
        base = Path(raw.get("base_dir") or ".")
        raw["base_dir"] = str(base if base.is_absolute() else (folder / base).resolve())
        return validate_config(cls, raw, what="ETL config", path=path)

    def resolve_path(self, source: str) -> Path:
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = (self.base_dir or Path.cwd()) / path
        return path


class ItemStatus(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


class SourceResult(_Model):
    """What happened to one source: counts per outcome and one-line reasons for failures."""

    author: str
    source: str
    kind: SourceKind | None = None
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = Field(0, description="Items deliberately left out (robots, caps, binaries).")
    deleted: int = Field(
        0, description="Documents gone from the source since its last crawl, marked deleted."
    )
    reason: str | None = Field(None, description="Why the whole source failed, one line.")
    errors: list[str] = Field(default_factory=list, description="`item: reason` for failed items.")
    seconds: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, value: Any) -> Any:
        # A dumped result carries ``status``; reading it back must not trip ``extra="forbid"``.
        return {k: v for k, v in value.items() if k != "status"} if isinstance(value, dict) else value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str:
        """``failed`` when the source gave nothing usable, else ``ok`` (item failures recorded)."""
        stored = self.new + self.updated + self.unchanged
        return "failed" if self.reason or (stored == 0 and self.failed + self.skipped > 0) else "ok"

    def count(self, status: ItemStatus) -> None:
        setattr(self, status.value, getattr(self, status.value) + 1)


class EtlSummary(_Model):
    run_id: str
    started_at: datetime
    finished_at: datetime
    sources: list[SourceResult]

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, value: Any) -> Any:
        return {k: v for k, v in value.items() if k != "totals"} if isinstance(value, dict) else value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> dict[str, int]:
        keys = ("new", "updated", "unchanged", "failed", "skipped")
        return {key: sum(getattr(result, key) for result in self.sources) for key in keys}

    @property
    def all_failed(self) -> bool:
        return bool(self.sources) and all(result.status == "failed" for result in self.sources)
