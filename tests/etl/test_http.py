"""The polite fetcher against a real HTTP server on 127.0.0.1: robots, retries, caps, redirects."""

from __future__ import annotations

import asyncio

import pytest

from twinops.etl.http import Fetcher, FetchError, RobotsDisallowed
from twinops.etl.sources.web import HTML_TYPES


def _get(policy, url: str, **kwargs):
    async def main():
        async with Fetcher(policy) as fetcher:
            return await fetcher.get(url, **kwargs)

    return asyncio.run(main())


def _reason(policy, url: str, error: type[Exception] = FetchError, **kwargs) -> str:
    with pytest.raises(error) as caught:
        _get(policy, url, **kwargs)
    return str(caught.value)


def test_redirect_is_followed_and_final_url_kept(site, policy) -> None:
    result = _get(policy, site.url("/redirect"), accept=HTML_TYPES)
    assert result.final_url == site.url("/articles/1.html")
    assert b"Article number 1" in result.body
    assert result.content_type == "text/html" and result.charset == "utf-8"


def test_redirect_loop_and_redirect_into_disallowed_path(site, policy) -> None:
    assert "redirects" in _reason(policy, site.url("/redirect-loop"))
    assert "robots.txt" in _reason(policy, site.url("/redirect-private"), RobotsDisallowed)
    assert site.hits["/private/secret.html"] == 0


def test_robots_txt_is_fetched_once_and_honoured(site, policy) -> None:
    async def main():
        async with Fetcher(policy) as fetcher:
            await fetcher.get(site.url("/articles/1.html"))
            await fetcher.get(site.url("/articles/2.html"))
            with pytest.raises(RobotsDisallowed):
                await fetcher.get(site.url("/private/secret.html"))

    asyncio.run(main())
    assert site.hits["/robots.txt"] == 1
    assert site.hits["/private/secret.html"] == 0


def test_404_is_not_retried_but_500_is(site, policy) -> None:
    assert _reason(policy, site.url("/missing")).startswith("HTTP 404")
    assert site.hits["/missing"] == 1
    reason = _reason(policy, site.url("/error500"))
    assert "HTTP 500" in reason and "2 attempt(s)" in reason
    assert site.hits["/error500"] == policy.retries + 1


def test_transient_503_recovers_on_retry(site, policy) -> None:
    result = _get(policy, site.url("/flaky"))
    assert result.status == 200 and site.hits["/flaky"] == 2


def test_slow_page_times_out_after_retries(site, policy) -> None:
    site.slow_seconds = 2.0
    assert "timed out" in _reason(policy, site.url("/slow"))
    assert site.hits["/slow"] == policy.retries + 1


@pytest.mark.parametrize("path", ["/huge", "/huge-declared"])
def test_50mb_page_is_stopped_at_the_size_cap(site, policy, path) -> None:
    reason = _reason(policy, site.url(path))
    assert "cap" in reason and "1,000,000" in reason


def test_content_type_is_checked(site, policy) -> None:
    reason = _reason(policy, site.url("/binary.png"), accept=HTML_TYPES)
    assert "unsupported content type image/png" in reason


@pytest.mark.parametrize("url", ["http://", "ftp://example.org/x", "https://exa mple.org/", "http://h:port/"])
def test_malformed_urls_fail_with_one_line(policy, url) -> None:
    reason = _reason(policy, url)
    assert reason.startswith("malformed URL") and "\n" not in reason


def test_unreachable_host_fails_fast_without_retry(policy, closed_port_url) -> None:
    reason = _reason(policy, closed_port_url)
    assert reason.startswith("cannot reach 127.0.0.1:")


def test_per_host_concurrency_is_bounded(site, policy) -> None:
    bounded = policy.model_copy(update={"per_host_concurrency": 2})

    async def main():
        async with Fetcher(bounded) as fetcher:
            await asyncio.gather(*(fetcher.get(site.url(f"/paced/{n}")) for n in range(8)))

    asyncio.run(main())
    assert sum(site.hits[f"/paced/{n}"] for n in range(8)) == 8
    assert site.max_in_flight <= 2


def test_robots_crawl_delay_slows_the_host_down(site, policy) -> None:
    site.pages["/robots.txt"] = (200, "text/plain", b"User-agent: *\nCrawl-delay: 1\nDisallow: /private/\n")

    async def main():
        async with Fetcher(policy) as fetcher:
            await fetcher.get(site.url("/articles/1.html"))
            return next(iter(fetcher._hosts.values())).interval

    assert asyncio.run(main()) == 1.0  # the per-host gap grows from 1/per_host_rate to the delay


def test_429_is_retried_after_the_servers_retry_after(site, policy) -> None:
    result = _get(policy, site.url("/rate-limited"), accept=HTML_TYPES)
    assert result.status == 200 and site.hits["/rate-limited"] == 2


def test_429_that_persists_fails_naming_the_rate_limit(site, policy) -> None:
    reason = _reason(policy, site.url("/always-429"))
    assert "429" in reason and "rate limited" in reason and "2 attempt(s)" in reason
    assert site.hits["/always-429"] == policy.retries + 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    import httpx

    from twinops.etl.http import retry_after_seconds

    assert retry_after_seconds(httpx.Headers({"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 60 < retry_after_seconds(httpx.Headers({"Retry-After": later})) <= 120
    assert retry_after_seconds(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None
