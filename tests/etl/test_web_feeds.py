"""Web articles, sitemaps and feeds crawled from 127.0.0.1 into the real wire server over TCP."""

from __future__ import annotations

from datetime import UTC, datetime

from twinops.domain import Author, Category, Platform
from twinops.etl import EtlJob, run_etl
from twinops.etl.sources.feeds import Entry, select
from twinops.infra.documents import DocumentRepository
from twinops.infra.mongo import connect

AUTHOR = "Ada Quill"


def _job(policy, *sources, **options) -> EtlJob:
    return EtlJob.for_author(AUTHOR, list(sources), crawl=policy.model_dump(), **options)


def _by_source(summary):
    return {result.source: result for result in summary.sources}


def test_article_sitemap_and_feed_land_in_mongodb(site, policy, mongo_settings) -> None:
    job = _job(policy, site.url("/articles/5.html"), site.url("/sitemap.xml"), site.url("/feed.xml"))
    summary = run_etl(job, mongo_settings)
    results = _by_source(summary)
    assert results[site.url("/articles/5.html")].kind == "web"
    assert results[site.url("/sitemap.xml")].kind == "sitemap"
    # Sources run concurrently and overlap (the feed lists 4, 5, 6, 1): whichever writes first
    # counts it new, the other unchanged.
    sitemap, feed = results[site.url("/sitemap.xml")], results[site.url("/feed.xml")]
    assert sitemap.new + sitemap.unchanged == 3 and sitemap.failed == 0
    assert feed.kind == "feed"
    assert feed.new + feed.unchanged == 4 and feed.failed == 0
    assert summary.totals["new"] == 6 and not summary.all_failed

    repo = DocumentRepository(connect(mongo_settings))
    assert repo.count() == 6
    stored = repo.get(next(iter(repo.ids())))
    document = stored.document
    assert document.platform is Platform.WEB and document.category is Category.ARTICLES
    assert document.author_id == Author(full_name=AUTHOR).id
    assert document.title.startswith("Post ")
    assert "Boring infrastructure wins" in document.content
    assert "Copyright" not in document.content and "About" not in document.content  # boilerplate gone
    assert document.published_at is not None and document.metadata["page_author"] == AUTHOR
    assert stored.crawl_run_id == summary.run_id


def test_recrawl_writes_nothing_and_changed_page_gets_a_revision(site, policy, mongo_settings) -> None:
    job = _job(policy, site.url("/sitemap.xml"))
    run_etl(job, mongo_settings)
    repo = DocumentRepository(connect(mongo_settings))
    article = site.url("/articles/2.html")
    document_id = next(d.document.id for d in repo.changed_since() if d.document.source_url == article)
    before = repo.get(document_id)

    again = run_etl(job, mongo_settings)
    assert again.totals == {"new": 0, "updated": 0, "unchanged": 3, "failed": 0, "skipped": 0}
    assert repo.get(document_id).updated_at == before.updated_at

    site.set_article(2, "A rewritten second article about vector search as a database problem, "
                     "with provenance on every point and aliases for every swap of the index.")  # fmt: skip
    third = run_etl(job, mongo_settings)
    assert (third.totals["updated"], third.totals["unchanged"]) == (1, 2)
    after = repo.get(document_id)
    assert after.revision == 2 and "vector search" in after.document.content
    assert [r["content_hash"] for r in repo.revisions(document_id)] == [before.document.content_hash]


def test_feed_limit_and_since(site, policy, mongo_settings) -> None:
    job = _job(policy, site.url("/feed.xml"), limit=2)
    summary = run_etl(job, mongo_settings)
    assert summary.sources[0].new == 2  # the two newest: June and May
    urls = {d.document.source_url for d in DocumentRepository(connect(mongo_settings)).changed_since()}
    assert urls == {site.url("/articles/6.html"), site.url("/articles/5.html")}

    since_job = _job(policy, site.url("/sitemap_index.xml"), since=datetime(2024, 1, 15, tzinfo=UTC))
    result = run_etl(since_job, mongo_settings).sources[0]
    assert result.new == 2  # Feb and Mar from the good child sitemap
    assert result.failed == 2 and result.status == "ok"  # the 404 child and the non-sitemap child
    assert any("HTTP 404" in error for error in result.errors)


def test_gzipped_sitemap_index_is_crawled(site, policy, mongo_settings) -> None:
    """`.xml.gz` index -> `.xml.gz` urlset -> articles."""
    result = run_etl(_job(policy, site.url("/sitemap_index.xml.gz")), mongo_settings).sources[0]
    assert result.kind == "sitemap"
    assert (result.status, result.new, result.failed) == ("ok", 2, 0), result.errors
    urls = {d.document.source_url for d in DocumentRepository(connect(mongo_settings)).changed_since()}
    assert urls == {site.url("/articles/4.html"), site.url("/articles/5.html")}


def test_pages_that_are_not_the_authors_writing_fail_the_source(site, policy, mongo_settings) -> None:
    pages = {
        "/challenge.html": "bot challenge",
        "/login-wall.html": "login wall",
        "/soft-404.html": "error page",
    }
    summary = run_etl(_job(policy, *(site.url(path) for path in pages)), mongo_settings)
    results = _by_source(summary)
    for path, kind in pages.items():
        result = results[site.url(path)]
        assert (result.status, result.new) == ("failed", 0), path
        assert any("not the author's content" in error and kind in error for error in result.errors), (
            result.errors
        )
    assert not list(DocumentRepository(connect(mongo_settings)).changed_since())


def test_select_orders_newest_first_and_keeps_undated() -> None:
    entries = [
        Entry("a", datetime(2024, 1, 1, tzinfo=UTC)),
        Entry("b", None),
        Entry("c", datetime(2024, 3, 1, tzinfo=UTC)),
        Entry("a", datetime(2024, 1, 1, tzinfo=UTC)),
    ]
    assert [e.url for e in select(entries, since=None, limit=None)] == ["c", "a", "b"]
    assert [e.url for e in select(entries, since=datetime(2024, 2, 1, tzinfo=UTC), limit=5)] == ["c", "b"]


def test_bad_sources_are_recorded_and_the_run_goes_on(site, policy, mongo_settings, closed_port_url) -> None:
    bad = {
        site.url("/missing"): "HTTP 404",
        site.url("/error500"): "HTTP 500",
        site.url("/slow"): "timed out",
        site.url("/binary.png"): "unsupported content type image/png",
        site.url("/huge"): "cap",
        site.url("/empty.html"): "no main text",
        site.url("/private/secret.html"): "robots.txt",
        site.url("/not-a-feed.xml"): "not a sitemap, RSS or Atom feed",
        closed_port_url: "cannot reach",
        "http://": "malformed URL",
        "gopher://example.org/x": "unknown source kind",
        "no/such/folder": "neither a URL nor an existing local path",
    }
    site.slow_seconds = 2.0
    job = _job(policy, site.url("/redirect"), *bad)
    summary = run_etl(job, mongo_settings)
    results = _by_source(summary)
    good = results[site.url("/redirect")]
    assert (good.status, good.new) == ("ok", 1)
    for source, expected in bad.items():
        result = results[source]
        assert result.status == "failed", source
        assert expected in result.reason, (source, result.reason)
        assert "\n" not in result.reason
    assert not summary.all_failed
    repo = DocumentRepository(connect(mongo_settings))
    assert repo.count() == 1  # nothing partial from the bad ones
    assert next(iter(repo.changed_since())).document.source_url == site.url("/articles/1.html")
