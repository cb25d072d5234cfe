"""What every source shares: its context, the sink it writes to, and whole-source failure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from twinops.domain import Author, RawDocument

if TYPE_CHECKING:
    from twinops.etl.http import Fetcher
    from twinops.etl.jobs import EtlJob, SourceSpec

MAX_RECORDED_ERRORS = 50


class SourceFailed(Exception):
    """The whole source is unusable (unknown kind, bad archive, clone failed): one-line reason."""


class ItemFailed(Exception):
    """One item of a source (a page, a file, a CSV) is unusable: one-line reason."""


class Sink(Protocol):
    """Where a source puts what it found; the runner's sink upserts into the warehouse."""

    async def add(self, document: RawDocument) -> None: ...

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
        for document in self.documents:
            await sink.add(document)


@dataclass
class SourceContext:
    author: Author
    spec: SourceSpec
    job: EtlJob
    fetcher: Fetcher

    @property
    def limit(self) -> int | None:
        return self.spec.limit or self.job.limit

    @property
    def since(self):
        return self.spec.since or self.job.since


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-") or "item"


def local_identity(scheme: str, author: Author, *parts: str) -> str:
    """A stable source URL for things with no public URL (local files, export members).

    It names the author and the path inside the source, not the machine path or archive name, so
    the same post collected from another checkout or a re-downloaded export is the same document.
    """
    path = "/".join(part.strip("/") for part in parts if part)
    return f"{scheme}://{slug(author.full_name)}/{path}"
