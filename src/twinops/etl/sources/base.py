"""What every source shares: its config entry (``Source``), its context, the sink it writes to, and
whole-source failure.

Each kind of source is one ``Source`` subclass with a ``kind`` literal and a ``collect`` method, in
its own module; ``twinops.etl.sources.SourceSpec`` is the discriminated union of them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from twinops.domain import Author, RawDocument
from twinops.domain.text import slug
from twinops.etl.options import FileLimits, UtcDatetime

if TYPE_CHECKING:
    from twinops.etl.http import Fetcher

MAX_RECORDED_ERRORS = 50


class SourceFailed(Exception):
    """The whole source is unusable (unknown kind, bad archive, clone failed): one-line reason."""


class ItemFailed(Exception):
    """One item of a source (a page, a file, a CSV) is unusable: one-line reason."""


@dataclass(frozen=True)
class Extracted:
    """An article taken out of a web page."""

    title: str
    content: str  # Markdown
    published_at: datetime | None
    page_author: str | None


# Page (HTML) and its URL if it has one → its article; raises ItemFailed when it holds none. The
# run's is ``ExtractionPool.extract`` (``twinops.etl.workers``), over ``extract.html_to_article``.
Extractor = Callable[[str | bytes, str | None], Extracted]


class JobOptions(Protocol):
    """What a source reads of its job (``twinops.etl.jobs.EtlJob``)."""

    limit: int | None
    since: datetime | None
    files: FileLimits

    def resolve_path(self, source: str) -> Path: ...


class Sink(Protocol):
    """Where a source puts what it found; the runner's sink upserts into the warehouse."""

    async def add(self, document: RawDocument) -> None: ...

    async def add_many(self, documents: list[RawDocument]) -> None: ...

    def fail(self, item: str, reason: str) -> None: ...

    def skip(self, item: str, reason: str | None = None) -> None: ...


@dataclass
class Batch:
    """The output of a synchronous source (git, exports, folders), written once it is complete.

    Collecting first means a source that turns out unusable halfway (a CSV without its columns)
    leaves nothing of itself in the warehouse.
    """

    documents: list[RawDocument] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str | None]] = field(default_factory=list)

    def extend(self, other: Batch) -> None:
        self.documents.extend(other.documents)
        self.failures.extend(other.failures)
        self.skipped.extend(other.skipped)

    async def drain_into(self, sink: Sink) -> None:
        for item, reason in self.failures:
            sink.fail(item, reason)
        for item, reason in self.skipped:
            sink.skip(item, reason)
        await sink.add_many(self.documents)  # together: the sink writes them in batches


class Source(BaseModel):
    """One source string plus per-source options (all optional); subclasses fix ``kind``."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="What the source is; `auto` dispatches on the source string.")
    source: str = Field(min_length=1, description="URL, git URL, local path, or export .zip.")
    limit: int | None = Field(None, ge=1, description="Feeds/sitemaps: at most this many articles.")
    since: UtcDatetime = Field(None, description="Feeds/sitemaps: only articles published after.")
    site_url: str | None = Field(
        None, description="Substack exports: the publication URL, so posts get their real URLs."
    )

    def resolved(self, job: JobOptions) -> Source:
        """The source of a definite kind (only ``auto`` has to look at the string first)."""
        return self

    async def collect(self, ctx: SourceContext, sink: Sink) -> None:
        """Collect the source into ``sink``; raises SourceFailed when the whole source is unusable."""
        raise NotImplementedError


class BatchSource(Source):
    """A source read synchronously into a ``Batch`` (files, archives, repositories)."""

    def read(self, ctx: SourceContext) -> Batch:
        raise NotImplementedError

    async def collect(self, ctx: SourceContext, sink: Sink) -> None:
        # Blocking I/O and parsing: a worker thread keeps the crawl loop responsive.
        batch = await asyncio.to_thread(self.read, ctx)
        await batch.drain_into(sink)


@dataclass
class SourceContext:
    author: Author
    spec: Source
    job: JobOptions
    fetcher: Fetcher
    extract: Extractor

    @property
    def limit(self) -> int | None:
        return self.spec.limit or self.job.limit

    @property
    def since(self):
        return self.spec.since or self.job.since


def local_identity(scheme: str, author: Author, *parts: str) -> str:
    """A stable source URL for things with no public URL (local files, export members).

    It names the author and the path inside the source, not the machine path or archive name, so
    the same post collected from another checkout or a re-downloaded export is the same document.
    """
    path = "/".join(part.strip("/") for part in parts if part)
    return f"{scheme}://{slug(author.full_name)}/{path}"
