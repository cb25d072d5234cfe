"""Sitemaps, RSS and Atom feeds: expand to their articles (how blogs, Medium and Substack publish).

Also the entry point of a bare web URL (``collect_web``): an article page, or, when the server
answers with XML, the feed or sitemap it is.

Parsing is ultimate-sitemap-parser's (``urlset``, ``sitemapindex`` and plain-text sitemaps, with
hardened XML) and feedparser's (RSS, Atom). A gzipped sitemap (``.xml.gz``, served as
``application/gzip`` or unlabelled) is unpacked with a size bound first. Written here: the
fetching of child sitemaps through the run's ``Fetcher``, so robots.txt, the per-host limits and
the size cap hold for every child, and a broken child is recorded while its siblings count.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from twinops.etl.http import FetchError, FetchResult, RobotsDisallowed
from twinops.etl.sources.base import ItemFailed, Sink, Source, SourceContext, SourceFailed
from twinops.etl.sources.web import HTML_TYPES, XML_TYPES, article_document, extract_article, fetch_article

GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")
LISTING_TYPES = (*XML_TYPES, *GZIP_TYPES, "text/plain", "text/html")  # servers label feeds loosely
MAX_SITEMAP_DEPTH = 3
GZIP_MAGIC = b"\x1f\x8b"
# usp logs every sitemap it cannot parse; twinops records those itself, once, in the run summary.
logging.getLogger("usp").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Entry:
    url: str
    published_at: datetime | None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _unpacked(body: bytes, url: str, cap: int) -> bytes:
    """The body, gunzipped when it is gzip data (bounded by the crawl's size cap)."""
    if not body.startswith(GZIP_MAGIC):
        return body
    from usp.exceptions import GunzipException
    from usp.helpers import gunzip

    try:
        return gunzip(body, max_output_bytes=cap)
    except GunzipException as error:
        raise SourceFailed(f"{url} is gzip data that does not unpack ({error})") from error


def _sitemap(body: bytes) -> tuple[list[Entry], list[str]] | None:
    """(article entries, child sitemap URLs) of a sitemap, or None when the body is not one."""
    from usp.objects.sitemap import IndexXMLSitemap, PagesTextSitemap, PagesXMLSitemap
    from usp.tree import sitemap_from_str

    parsed = sitemap_from_str(body.decode("utf-8", errors="replace"))
    if isinstance(parsed, IndexXMLSitemap):
        return [], [child.url for child in parsed.sub_sitemaps]
    if isinstance(parsed, PagesXMLSitemap | PagesTextSitemap):
        return [Entry(page.url, _utc(page.last_modified)) for page in parsed.pages], []
    return None


def _feed_entries(body: bytes, base: str) -> list[Entry]:
    from urllib.parse import urljoin

    import feedparser

    parsed = feedparser.parse(body)
    if not parsed.entries:
        problem = getattr(parsed, "bozo_exception", None) if parsed.bozo else None
        detail = f" ({str(problem).splitlines()[0]})" if problem else ""
        raise SourceFailed(f"{base} is not a sitemap, RSS or Atom feed with entries{detail}")
    entries = []
    for item in parsed.entries:
        link = item.get("link") or next(
            (ref.get("href") for ref in item.get("links", []) if ref.get("href")), None
        )
        if not link:
            continue
        stamp = item.get("published_parsed") or item.get("updated_parsed")
        published = datetime(*stamp[:6], tzinfo=UTC) if stamp else None
        entries.append(Entry(urljoin(base, link), published))
    return entries


async def _expand(ctx: SourceContext, sink: Sink, result: FetchResult, depth: int = 0) -> list[Entry]:
    body = _unpacked(result.body, result.final_url, ctx.fetcher.policy.max_bytes)
    found = await asyncio.to_thread(_sitemap, body)  # parsing is CPU work: off the event loop
    if found is None:
        return _feed_entries(body, result.final_url)
    entries, children = found
    if children and depth < MAX_SITEMAP_DEPTH:
        fetched = await asyncio.gather(
            *(ctx.fetcher.get(child, accept=LISTING_TYPES) for child in children), return_exceptions=True
        )
        for url, child in zip(children, fetched, strict=True):
            if isinstance(child, FetchResult):
                try:
                    entries.extend(await _expand(ctx, sink, child, depth + 1))
                except SourceFailed as error:
                    sink.fail(url, str(error))
            elif isinstance(child, RobotsDisallowed):
                sink.skip(url, str(child))
            elif isinstance(child, FetchError):
                sink.fail(url, str(child))  # one broken child sitemap; its siblings still count
            else:
                raise child
    return entries


def select(entries: list[Entry], *, since: datetime | None, limit: int | None) -> list[Entry]:
    """Newest first, de-duplicated; ``since`` keeps undated entries (they cannot be ruled out)."""
    seen: set[str] = set()
    unique = [e for e in entries if not (e.url in seen or seen.add(e.url))]
    if since is not None:
        unique = [e for e in unique if e.published_at is None or e.published_at > since]
    oldest = datetime.min.replace(tzinfo=UTC)
    unique.sort(key=lambda e: e.published_at or oldest, reverse=True)
    return unique[:limit] if limit else unique


async def collect_listing(ctx: SourceContext, sink: Sink, result: FetchResult | None = None) -> None:
    """Fetch the listing (unless given), then every selected article concurrently."""
    url = ctx.spec.source.strip()
    if result is None:
        try:
            result = await ctx.fetcher.get(url, accept=LISTING_TYPES)
        except RobotsDisallowed as error:
            sink.skip(url, str(error))
            return
        except FetchError as error:
            raise SourceFailed(str(error)) from error
    entries = select(await _expand(ctx, sink, result), since=ctx.since, limit=ctx.limit)
    # The fetcher's per-host gates bound the real concurrency; gather just queues them all.
    await asyncio.gather(*(fetch_article(entry.url, ctx, sink) for entry in entries))


def _is_listing(result: FetchResult) -> bool:
    return result.content_type.startswith(XML_TYPES + GZIP_TYPES) or result.body.startswith(GZIP_MAGIC)


async def collect_web(ctx: SourceContext, sink: Sink) -> None:
    """One URL: an article, or, when the server answers with XML or gzip, the feed/sitemap it is."""
    url = ctx.spec.source.strip()
    try:
        result = await ctx.fetcher.get(url, accept=HTML_TYPES + XML_TYPES + GZIP_TYPES)
    except RobotsDisallowed as error:
        sink.skip(url, str(error))
        return
    except FetchError as error:
        sink.fail(url, str(error))
        return
    if _is_listing(result):
        await collect_listing(ctx, sink, result)
        return
    try:
        extracted = await extract_article(ctx, result.body, result.final_url)
    except ItemFailed as error:
        sink.fail(url, str(error))
        return
    await sink.add(article_document(extracted, result.final_url, ctx.author))


class WebSource(Source):
    """Any http(s) page: its article, or the feed/sitemap it turns out to be."""

    kind: Literal["web"] = "web"

    async def collect(self, ctx: SourceContext, sink: Sink) -> None:
        await collect_web(ctx, sink)


class FeedSource(Source):
    """An RSS or Atom feed: every entry's article (newest first, within ``limit`` and ``since``)."""

    kind: Literal["feed"] = "feed"

    async def collect(self, ctx: SourceContext, sink: Sink) -> None:
        await collect_listing(ctx, sink)


class SitemapSource(Source):
    """A sitemap or sitemap index: every listed page's article."""

    kind: Literal["sitemap"] = "sitemap"

    async def collect(self, ctx: SourceContext, sink: Sink) -> None:
        await collect_listing(ctx, sink)
