"""The kinds of source, one module each, and ``SourceSpec``: the discriminated union of them all.

A source entry in a config names its ``kind`` (default ``auto``: dispatched on the source string,
see ``twinops.etl.dispatch``); an unknown kind is a one-line config error naming the known ones.
Adding a kind: a ``Source`` subclass with its ``kind`` literal and ``collect`` in its own module,
one line in ``SourceSpec`` below, and a rule in the dispatcher if strings should find it.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, TypeAdapter

from twinops.etl.dispatch import detect_kind
from twinops.etl.sources.base import (
    Batch,
    BatchSource,
    ItemFailed,
    JobOptions,
    Sink,
    Source,
    SourceContext,
    SourceFailed,
)
from twinops.etl.sources.exports import ExportSource
from twinops.etl.sources.feeds import FeedSource, SitemapSource, WebSource
from twinops.etl.sources.folder import FolderSource
from twinops.etl.sources.git import GitSource


class AutoSource(Source):
    """A source whose kind the dispatcher reads from the string when the run meets it."""

    kind: Literal["auto"] = "auto"

    def resolved(self, job: JobOptions) -> Source:
        kind = detect_kind(self.source, job)
        return SOURCES.validate_python({**self.model_dump(exclude={"kind"}), "kind": kind})

    async def collect(self, ctx: SourceContext, sink: Sink) -> None:
        await self.resolved(ctx.job).collect(ctx, sink)


SourceSpec = Annotated[
    AutoSource | WebSource | FeedSource | SitemapSource | GitSource | ExportSource | FolderSource,
    Field(discriminator="kind"),
]
SOURCES: TypeAdapter[Source] = TypeAdapter(SourceSpec)
# The kinds a config may name, in the order of the union.
SOURCE_KINDS: tuple[str, ...] = tuple(
    get_args(member.model_fields["kind"].annotation)[0] for member in get_args(get_args(SourceSpec)[0])
)

__all__ = [
    "SOURCE_KINDS",
    "AutoSource",
    "Batch",
    "BatchSource",
    "ExportSource",
    "FeedSource",
    "FolderSource",
    "GitSource",
    "ItemFailed",
    "Sink",
    "SitemapSource",
    "Source",
    "SourceContext",
    "SourceFailed",
    "SourceSpec",
    "WebSource",
]
