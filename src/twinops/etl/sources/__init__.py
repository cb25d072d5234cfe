"""One module per source kind; ``run_source`` routes a kind to its collector."""

from __future__ import annotations

import asyncio

from twinops.etl.jobs import SourceKind
from twinops.etl.sources.base import Batch, ItemFailed, Sink, SourceContext, SourceFailed


async def run_source(kind: SourceKind, ctx: SourceContext, sink: Sink) -> None:
    """Collect one source into ``sink``; raises SourceFailed when the whole source is unusable."""
    from twinops.etl.sources import exports, feeds, folder, git

    if kind is SourceKind.WEB:
        await feeds.collect_web(ctx, sink)
        return
    if kind in {SourceKind.FEED, SourceKind.SITEMAP}:
        await feeds.collect_listing(ctx, sink)
        return
    collectors = {SourceKind.GIT: git.collect_git, SourceKind.EXPORT: exports.collect_export}
    collect = collectors.get(kind, folder.collect_folder)
    # File sources are blocking I/O and parsing: a worker thread keeps the crawl loop responsive.
    batch: Batch = await asyncio.to_thread(collect, ctx)
    await batch.drain_into(sink)


__all__ = ["Batch", "ItemFailed", "Sink", "SourceContext", "SourceFailed", "run_source"]
