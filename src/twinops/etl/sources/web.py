"""Web articles: any http(s) page → main text as Markdown plus title, author, published date.

A bare URL that may be a feed or sitemap instead is routed by ``feeds.collect_web``.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.etl.http import FetchError, RobotsDisallowed
from twinops.etl.sources.base import Extracted, ItemFailed, Sink, SourceContext

HTML_TYPES = ("text/html", "application/xhtml+xml")
XML_TYPES = ("application/rss+xml", "application/atom+xml", "application/xml", "text/xml")


def platform_for(url: str) -> Platform:
    host = (urlsplit(url).hostname or "").lower()
    if host == "medium.com" or host.endswith(".medium.com"):
        return Platform.MEDIUM
    if host.endswith(".substack.com"):
        return Platform.SUBSTACK
    if host == "linkedin.com" or host.endswith(".linkedin.com"):
        return Platform.LINKEDIN
    return Platform.WEB


async def extract_article(ctx: SourceContext, html: str | bytes, url: str) -> Extracted:
    """The page's article; raises ItemFailed when it has none or its extraction crashed.

    Extraction runs in the run's worker processes (lxml parsers must never be shared between
    threads, and a page that crashes lxml must not take the run with it): this thread only waits.
    """
    return await asyncio.to_thread(ctx.extract, html, url)


def article_document(extracted: Extracted, url: str, author: Author, **metadata: str | None) -> RawDocument:
    """A RawDocument from an article extracted from the page at ``url``."""
    return RawDocument(
        platform=platform_for(url),
        category=Category.ARTICLES,
        source_url=url,
        author_id=author.id,
        author_name=author.full_name,
        title=extracted.title,
        content=extracted.content,
        published_at=extracted.published_at,
        metadata={"page_author": extracted.page_author, **metadata},
    )


async def fetch_article(url: str, ctx: SourceContext, sink: Sink) -> None:
    """Fetch, extract and hand one article to the sink; failures are recorded, never raised."""
    try:
        result = await ctx.fetcher.get(url, accept=HTML_TYPES)
        extracted = await extract_article(ctx, result.body, result.final_url)
    except RobotsDisallowed as error:
        sink.skip(url, str(error))
        return
    except (FetchError, ItemFailed) as error:
        sink.fail(url, str(error))
        return
    await sink.add(article_document(extracted, result.final_url, ctx.author, fetched_from=url))
