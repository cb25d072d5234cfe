"""Sitemaps, RSS and Atom feeds: expand to their articles (how blogs, Medium and Substack publish)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

from lxml import etree

from twinops.etl.http import FetchError, FetchResult, RobotsDisallowed
from twinops.etl.sources.base import Sink, SourceContext, SourceFailed
from twinops.etl.sources.extract import parse_date
from twinops.etl.sources.web import XML_TYPES, fetch_article

LISTING_TYPES = (*XML_TYPES, "text/plain", "text/html")  # servers label feeds loosely
MAX_SITEMAP_DEPTH = 3
# No entities, no network: a hostile sitemap cannot read local files or call out.
SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=False)


@dataclass(frozen=True)
class Entry:
    url: str
    published_at: datetime | None


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _sitemap_root(body: bytes) -> etree._Element | None:
    try:
        root = etree.fromstring(body, SAFE_XML)
    except etree.XMLSyntaxError:
        return None
    return root if _local(root.tag) in {"urlset", "sitemapindex"} else None


def _sitemap_entries(root: etree._Element, base: str) -> tuple[list[Entry], list[str]]:
    """(article entries, child sitemap URLs) of a ``urlset`` or ``sitemapindex``."""
    entries, children = [], []
    for node in root:
        values = {_local(child.tag): (child.text or "").strip() for child in node}
        loc = values.get("loc")
        if not loc:
            continue
        if _local(root.tag) == "sitemapindex":
            children.append(urljoin(base, loc))
        else:
            entries.append(Entry(urljoin(base, loc), parse_date(values.get("lastmod"))))
    return entries, children


def _feed_entries(body: bytes, base: str) -> list[Entry]:
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
    root = _sitemap_root(result.body)
    if root is None:
        return _feed_entries(result.body, result.final_url)
    entries, children = _sitemap_entries(root, result.final_url)
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
