"""Extraction in worker processes: a page that kills its process fails alone, and the run goes on."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from twinops.etl import EtlJob, run_etl
from twinops.etl.sources.base import Extracted, ItemFailed
from twinops.etl.sources.extract import html_to_article
from twinops.etl.workers import ExtractionPool

from .conftest import article_body, article_html

CRASH_MARKER = "CRASH-THIS-PAGE"
HANG_MARKER = "HANG-ON-THIS-PAGE"


def extract_or_crash(html: str | bytes, url: str | None) -> Extracted:
    """The real extractor, except that a marked page kills its process (as lxml did) or hangs it.

    Module level, so the spawned workers can import it.
    """
    text = html.decode() if isinstance(html, bytes) else html
    if CRASH_MARKER in text:
        os.kill(os.getpid(), signal.SIGSEGV)
    if HANG_MARKER in text:
        time.sleep(60)
    return html_to_article(html, url)


def _page(n: int, *, crash: bool = False) -> str:
    body = article_body(n) + (f"\n\n{CRASH_MARKER}" if crash else "")
    return article_html(f"Post {n}", body)


def test_a_page_that_kills_its_worker_fails_alone_and_the_pool_goes_on() -> None:
    with ExtractionPool(extract_or_crash, workers=2) as pool:
        assert pool.extract(_page(1), "http://a.test/1").title == "Post 1"
        with pytest.raises(ItemFailed, match=r"extraction crashed \(killed by SIGSEGV\)"):
            pool.extract(_page(2, crash=True), "http://a.test/2")
        # The dead worker was replaced: the next pages extract as before.
        titles = [pool.extract(_page(n), f"http://a.test/{n}").title for n in (3, 4, 5)]
        assert titles == ["Post 3", "Post 4", "Post 5"]


def test_a_page_that_hangs_its_worker_fails_after_the_timeout_and_the_pool_goes_on() -> None:
    with ExtractionPool(extract_or_crash, workers=1, timeout_s=1.0) as pool:
        with pytest.raises(ItemFailed, match=r"extraction took longer than 1s"):
            pool.extract(article_html("Stuck", article_body(8) + HANG_MARKER), "http://a.test/8")
        assert pool.extract(_page(9), "http://a.test/9").title == "Post 9"


def test_closing_the_pool_releases_every_page_still_waiting_for_it() -> None:
    # A run that ends (or is interrupted) must not leave threads waiting for a worker forever.
    outcomes: dict[str, str] = {}

    def extract(name: str, html: str) -> None:
        try:
            pool.extract(html, None)
            outcomes[name] = "extracted"
        except ItemFailed as error:
            outcomes[name] = str(error)

    pool = ExtractionPool(extract_or_crash, workers=1, timeout_s=60.0)
    pool.extract(_page(10), None)  # the worker is up
    busy = threading.Thread(target=extract, args=("busy", _page(11) + HANG_MARKER))
    waiting = threading.Thread(target=extract, args=("waiting", _page(12)))
    busy.start()
    time.sleep(0.5)
    waiting.start()
    time.sleep(0.5)
    pool.close()
    busy.join(timeout=10)
    waiting.join(timeout=10)
    assert not busy.is_alive() and not waiting.is_alive()
    assert outcomes["busy"].startswith("extraction crashed")
    assert "closed" in outcomes["waiting"]


def test_an_item_failure_in_a_worker_keeps_its_reason() -> None:
    with ExtractionPool(workers=1) as pool:
        with pytest.raises(ItemFailed, match=r"no main text found in http://a\.test/empty"):
            pool.extract("<html><body><p>Too short.</p></body></html>", "http://a.test/empty")
        assert pool.extract(_page(7), None).title == "Post 7"


def test_a_crashing_page_fails_only_its_item_in_a_run(site, policy, mongo_settings) -> None:
    site.set_article(2, article_body(2) + f"\n\n{CRASH_MARKER}")
    job = EtlJob.for_author("Ada Quill", [site.url("/sitemap.xml")], crawl=policy.model_dump())
    summary = run_etl(job, mongo_settings, extractor=extract_or_crash)
    [result] = summary.sources
    assert (result.status, result.new, result.failed) == ("ok", 2, 1)
    [error] = result.errors
    assert site.url("/articles/2.html") in error and "killed by SIGSEGV" in error


def test_forty_pages_extracted_concurrently_ten_times_without_a_crash() -> None:
    # As a crawl does: every page handed over from its own thread at once. In threads sharing
    # trafilatura's lxml parser this aborted runs; each worker process parses one page at a time.
    pages = {f"http://a.test/{n}": _page(n) for n in range(40)}

    async def round_of_forty(pool: ExtractionPool) -> list[str]:
        extracted = await asyncio.gather(
            *(asyncio.to_thread(pool.extract, html, url) for url, html in pages.items())
        )
        return [article.title for article in extracted]

    with ExtractionPool() as pool:
        for _ in range(10):
            assert asyncio.run(round_of_forty(pool)) == [f"Post {n}" for n in range(40)]
