"""A polite async HTTP fetcher: robots.txt, per-host concurrency and rate, retries, size cap.

Retries are tenacity's: timeouts, 429 and 5xx, with full-jitter exponential backoff unless the
answer says `Retry-After` (honoured up to `total_timeout_s`). Refused connections and other 4xx
are final.

One ``Fetcher`` is shared by every source of a run so the per-host limits hold across sources
(a feed and the articles it lists usually live on the same host).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from twinops.etl.options import CrawlPolicy

REDIRECT_CODES = {301, 302, 303, 307, 308}
# Answers worth another attempt: rate limited, or the server failed (4xx other than 429 are final).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, *range(505, 600)})


class FetchError(Exception):
    """A URL could not be fetched; ``str()`` is a one-line reason for the run summary."""


class RobotsDisallowed(FetchError):
    """robots.txt forbids the URL: recorded as skipped, not failed."""


class _RetryableStatus(Exception):
    """A 429 or 5xx answer: tenacity retries it; after the last attempt it becomes a FetchError."""

    def __init__(self, status: int, headers: httpx.Headers) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _WaitRetryAfter(wait_base):
    """The server's ``Retry-After`` (capped) when the answer carried one, else ``fallback``."""

    def __init__(self, fallback: wait_base, *, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, _RetryableStatus):
            after = retry_after_seconds(error.headers)
            if after is not None:
                return min(after, self.cap)
        return self.fallback(retry_state)


@dataclass(frozen=True)
class FetchResult:
    url: str  # as requested
    final_url: str  # after redirects
    status: int
    content_type: str  # media type only, lower-case ("text/html")
    charset: str | None
    body: bytes

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")


def _media_type(header: str | None) -> tuple[str, str | None]:
    if not header:
        return "", None
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"' ").lower()
    return media.strip().lower(), charset


@dataclass
class _Host:
    """Per-host politeness state: a concurrency gate and the earliest next request time."""

    gate: asyncio.Semaphore
    interval: float
    next_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    robots: RobotFileParser | None = None
    robots_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    robots_error: str | None = None

    async def wait_turn(self) -> None:
        async with self.lock:
            now = time.monotonic()
            delay = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host, else FetchError with why."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or any(c.isspace() for c in url):
        raise FetchError(f"malformed URL {url!r}: expected http(s)://host/path")
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as error:
        raise FetchError(f"malformed URL {url!r}: {error}") from error
    return url


class Fetcher:
    """Use as ``async with Fetcher(policy) as fetcher: await fetcher.get(url)``."""

    def __init__(self, policy: CrawlPolicy, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._hosts: dict[str, _Host] = {}
        self._global = asyncio.Semaphore(policy.concurrency)

    async def __aenter__(self) -> Fetcher:
        timeout = httpx.Timeout(self.policy.timeout_s)
        limits = httpx.Limits(
            max_connections=self.policy.concurrency, max_keepalive_connections=self.policy.concurrency
        )
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=limits,
            follow_redirects=False,  # followed by hand so robots and host limits apply per hop
            headers={"User-Agent": self.policy.user_agent},
            transport=self._transport,
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _host(self, url: str) -> _Host:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        if key not in self._hosts:
            self._hosts[key] = _Host(
                gate=asyncio.Semaphore(self.policy.per_host_concurrency),
                interval=1.0 / self.policy.per_host_rate,
            )
        return self._hosts[key]

    async def get(self, url: str, *, accept: tuple[str, ...] = ()) -> FetchResult:
        """GET ``url`` following redirects; ``accept`` lists allowed media type prefixes."""
        current = check_url(url)
        for _hop in range(self.policy.max_redirects + 1):
            await self._check_robots(current)
            status, headers, body = await self._fetch_with_retries(current)
            if status in REDIRECT_CODES:
                location = headers.get("location")
                if not location:
                    raise FetchError(f"HTTP {status} redirect without a Location header at {current}")
                current = check_url(urljoin(current, location))
                continue
            if status >= 400:
                raise FetchError(f"HTTP {status} at {current}")
            media, charset = _media_type(headers.get("content-type"))
            if accept and not media.startswith(accept):
                raise FetchError(
                    f"unsupported content type {media or 'none'} at {current} (expected {', '.join(accept)})"
                )
            return FetchResult(url, current, status, media, charset, body)
        raise FetchError(f"more than {self.policy.max_redirects} redirects from {url}")

    async def _fetch_with_retries(self, url: str) -> tuple[int, httpx.Headers, bytes]:
        """One GET with tenacity's retries: timeouts, 429 and 5xx, honouring ``Retry-After``."""
        attempts = self.policy.retries + 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            # Full jitter so concurrent retries do not stampede the host; a Retry-After wins.
            wait=_WaitRetryAfter(
                wait_random_exponential(multiplier=self.policy.backoff_s, max=self.policy.total_timeout_s),
                cap=self.policy.total_timeout_s,
            ),
            retry=retry_if_exception_type((httpx.TimeoutException, TimeoutError, _RetryableStatus)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    status, headers, body = await self._fetch_once(url)
                    if status in RETRY_STATUSES:
                        raise _RetryableStatus(status, headers)
                    return status, headers, body
        except _RetryableStatus as error:
            if error.status == 429:
                raise FetchError(f"HTTP 429 (rate limited) at {url} after {attempts} attempt(s)") from error
            raise FetchError(f"HTTP {error.status} at {url} after {attempts} attempt(s)") from error
        except (httpx.TimeoutException, TimeoutError) as error:
            raise FetchError(f"timed out after {attempts} attempt(s) at {url}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self, url: str) -> tuple[int, httpx.Headers, bytes]:
        assert self._client is not None, "use `async with Fetcher(...)`"
        host = self._host(url)
        async with host.gate:
            # Wait for the host's turn before taking a global slot: a slow host (crawl-delay)
            # must not hold slots that other hosts could use meanwhile.
            await host.wait_turn()
            async with self._global:
                try:
                    async with asyncio.timeout(self.policy.total_timeout_s):
                        return await self._stream(url)
                except httpx.TimeoutException:
                    raise
                except httpx.TransportError as error:
                    # Connection refused, DNS failure, reset: not retried (only 5xx and timeouts are).
                    detail = (str(error).splitlines() or [""])[0]
                    name = urlsplit(url).netloc
                    raise FetchError(f"cannot reach {name} ({type(error).__name__}: {detail})") from error

    async def _stream(self, url: str) -> tuple[int, httpx.Headers, bytes]:
        assert self._client is not None
        cap = self.policy.max_bytes
        async with self._client.stream("GET", url) as response:
            if response.status_code in REDIRECT_CODES or response.status_code >= 400:
                return response.status_code, response.headers, b""
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise FetchError(f"document of {int(declared):,} bytes is over the {cap:,}-byte cap at {url}")
            chunks: list[bytes] = []
            size = 0
            # Stream and stop at the cap: a huge page never sits in memory whole.
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    raise FetchError(f"document larger than the {cap:,}-byte cap at {url}")
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    async def _check_robots(self, url: str) -> None:
        if not self.policy.respect_robots:
            return
        host = self._host(url)
        async with host.robots_lock:
            if host.robots is None and host.robots_error is None:
                await self._load_robots(url, host)
        if host.robots_error is not None:
            raise FetchError(host.robots_error)
        assert host.robots is not None
        if not host.robots.can_fetch(self.policy.user_agent, url):
            raise RobotsDisallowed(f"disallowed by robots.txt: {url}")

    async def _load_robots(self, url: str, host: _Host) -> None:
        parts = urlsplit(url)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        parser = RobotFileParser(robots_url)
        current = robots_url
        try:
            for _hop in range(self.policy.max_redirects + 1):  # RFC 9309: follow up to five
                status, headers, body = await self._fetch_with_retries(current)
                if status not in REDIRECT_CODES or not headers.get("location"):
                    break
                current = check_url(urljoin(current, headers["location"]))
        except FetchError as error:
            # Unreachable host: every URL on it fails with the same reason, no request repeated.
            host.robots_error = str(error)
            return
        if status in {401, 403}:
            parser.disallow_all = True  # conservative, as urllib.robotparser: a locked door means no
        elif status >= 400 or status in REDIRECT_CODES:
            parser.allow_all = True  # no robots.txt (or endless redirects) means no rules
        else:
            parser.parse(body.decode("utf-8", errors="replace").splitlines())
            delay = parser.crawl_delay(self.policy.user_agent)
            if delay:
                host.interval = max(host.interval, float(delay))
        host.robots = parser
