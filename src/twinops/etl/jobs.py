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
          - source: https://example.org/notes      # a kind forced instead of dispatched
            kind: feed

``kind`` is one of ``SOURCE_KINDS`` (default ``auto``); any other is a one-line config error.

Relative local paths resolve against ``base_dir`` (default: the config file's folder).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from twinops.etl.options import CrawlPolicy, FileLimits, UtcDatetime
from twinops.etl.sources import SourceSpec
from twinops.infra.config_files import read_yaml_mapping, validate_config

__all__ = ["AuthorSources", "CrawlPolicy", "EtlJob", "EtlSummary", "FileLimits", "SourceResult"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthorSources(_Model):
    full_name: str = Field(min_length=1)
    sources: list[SourceSpec] = Field(min_length=1)

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_sources(cls, value: Any) -> Any:
        # A bare string is the common case in configs: ``- https://...``; with no kind, dispatch.
        if isinstance(value, list):
            return [
                {"source": item, "kind": "auto"}
                if isinstance(item, str)
                else {"kind": "auto", **item}
                if isinstance(item, dict)
                else item
                for item in value
            ]
        return value


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
    kind: str | None = Field(None, description="The kind the source turned out to be.")
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
