"""A real HTTP server on 127.0.0.1 with the pages the crawler meets in the wild (and the bad ones)."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twinops.etl.jobs import CrawlPolicy

HUGE_BYTES = 50 * 1024 * 1024
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]


def article_html(title: str, body: str, *, date: str = "2024-03-05", author: str = "Ada Quill") -> str:
    paragraphs = "".join(f"<p>{line}</p>" for line in body.split("\n\n"))
    return (
        "<!doctype html><html><head>"
        f"<title>{title}</title><meta name='author' content='{author}'>"
        f"<meta property='article:published_time' content='{date}T09:00:00Z'>"
        "</head><body><nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
        f"<article><h1>{title}</h1>{paragraphs}</article>"
        "<footer>Copyright Ada Quill. All rights reserved.</footer></body></html>"
    )


def article_body(n: int) -> str:
    return (
        f"Article number {n} is about running machine learning platforms on Kubernetes without drama. "
        "Boring infrastructure wins because the people on call already know how it fails.\n\n"
        f"The second paragraph of article {n} explains why evaluation gates and golden sets matter "
        "more than any single clever trick in the training loop, with numbers and examples."
    )


@dataclass
class Site:
    """The fixture web site: pages can be edited between crawls to test revisions."""

    base: str
    pages: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    slow_seconds: float = 3.0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def set_article(self, n: int, body: str | None = None, *, date: str = "2024-03-05") -> None:
        html = article_html(f"Post {n}", body or article_body(n), date=date)
        self.pages[f"/articles/{n}.html"] = (200, "text/html; charset=utf-8", html.encode())


def _build_site(base: str) -> Site:
    site = Site(base=base)
    for n in range(1, 7):
        site.set_article(n, date=f"2024-0{n}-10")
    site.pages["/robots.txt"] = (200, "text/plain", b"User-agent: *\nDisallow: /private/\n")
    site.pages["/private/secret.html"] = (
        200,
        "text/html",
        article_html("Secret", article_body(99)).encode(),
    )
    urls = "".join(
        f"<url><loc>{base}/articles/{n}.html</loc><lastmod>2024-0{n}-10</lastmod></url>" for n in (1, 2, 3)
    )
    site.pages["/sitemap.xml"] = (
        200,
        "application/xml",
        f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode(),
    )
    index = (
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sitemap.xml</loc></sitemap>"
        f"<sitemap><loc>{base}/missing-sitemap.xml</loc></sitemap>"
        f"<sitemap><loc>{base}/not-a-feed.xml</loc></sitemap></sitemapindex>"
    )
    site.pages["/sitemap_index.xml"] = (200, "application/xml", index.encode())
    items = "".join(
        f"<item><title>Post {n}</title><link>{base}/articles/{n}.html</link>"
        f"<pubDate>Mon, 10 {MONTHS[n - 1]} 2024 09:00:00 GMT</pubDate></item>"
        for n in (4, 5, 6, 1)
    )
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Ada</title>'
        f"<link>{base}/</link>{items}</channel></rss>"
    )
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss.encode())
    # A gzipped sitemap index whose child is a gzipped urlset: how large sites publish.
    child = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{base}/articles/4.html</loc><lastmod>2024-04-10</lastmod></url>"
        f"<url><loc>{base}/articles/5.html</loc></url></urlset>"
    )
    site.pages["/sitemaps/posts.xml.gz"] = (200, "application/x-gzip", gzip.compress(child.encode()))
    gz_index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sitemaps/posts.xml.gz</loc></sitemap></sitemapindex>"
    )
    site.pages["/sitemap_index.xml.gz"] = (200, "application/gzip", gzip.compress(gz_index.encode()))
    # Answered with 200, but not the author's writing: each must fail, not fill the index.
    filler = " ".join(["The site needs a moment before it shows the page you asked for."] * 4)
    site.pages["/challenge.html"] = (
        200,
        "text/html",
        article_html(
            "Just a moment...", f"Verify you are human by completing the action below.\n\n{filler}"
        ).encode(),
    )
    site.pages["/login-wall.html"] = (
        200,
        "text/html",
        article_html("Members only", f"Sign in to continue reading this story.\n\n{filler}").encode(),
    )
    site.pages["/soft-404.html"] = (
        200,
        "text/html",
        article_html("Page not found", f"The page you are looking for does not exist.\n\n{filler}").encode(),
    )
    site.pages["/binary.png"] = (200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    site.pages["/empty.html"] = (200, "text/html", b"<html><body><nav>menu</nav></body></html>")
    site.pages["/not-a-feed.xml"] = (
        200,
        "application/xml",
        b"<?xml version='1.0'?><config><a>1</a></config>",
    )
    return site


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _send(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            with site.lock:
                site.hits[path] += 1
                site.in_flight += 1
                site.max_in_flight = max(site.max_in_flight, site.in_flight)
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._route(path)  # the client may give up mid-body (size cap, timeout): expected
            finally:
                with site.lock:
                    site.in_flight -= 1

        def _route(self, path: str) -> None:
            if path in site.pages:
                self._send(*site.pages[path])
            elif path == "/redirect":
                self._send(301, "text/html", b"", Location="/articles/1.html")
            elif path == "/redirect-loop":
                self._send(302, "text/html", b"", Location="/redirect-loop")
            elif path == "/redirect-private":
                self._send(302, "text/html", b"", Location="/private/secret.html")
            elif path == "/slow":
                time.sleep(site.slow_seconds)
                self._send(200, "text/html", article_html("Slow", article_body(7)).encode())
            elif path.startswith("/paced/"):
                time.sleep(0.05)  # long enough for concurrent requests to overlap
                self._send(200, "text/html", article_html("Paced", article_body(9)).encode())
            elif path == "/error500":
                self._send(500, "text/plain", b"boom")
            elif path == "/flaky":
                if site.hits[path] == 1:
                    self._send(503, "text/plain", b"try again")
                else:
                    self._send(200, "text/html", article_html("Flaky", article_body(8)).encode())
            elif path == "/rate-limited":
                if site.hits[path] == 1:
                    self._send(429, "text/plain", b"slow down", Retry_After="1")
                else:
                    self._send(200, "text/html", article_html("Patient", article_body(10)).encode())
            elif path == "/always-429":
                self._send(429, "text/plain", b"slow down", Retry_After="0")
            elif path in {"/huge", "/huge-declared"}:
                self._huge(declared=path == "/huge-declared")
            else:
                self._send(404, "text/plain", b"not found")

        def _huge(self, *, declared: bool) -> None:
            # Streamed in chunks: the client must stop at its cap instead of buffering 50 MB.
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            if declared:
                self.send_header("Content-Length", str(HUGE_BYTES))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"<p>" + b"x" * 65530 + b"</p>"
            sent = 0
            while sent < HUGE_BYTES:
                if declared:
                    self.wfile.write(chunk)
                else:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            if not declared:
                self.wfile.write(b"0\r\n\r\n")

    return Handler


@pytest.fixture
def site() -> Iterator[Site]:
    """A fresh fixture site on a free 127.0.0.1 port per test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    fixture_site = _build_site(base)
    server.RequestHandlerClass = _handler(fixture_site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fixture_site
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connection refused, like an unreachable host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/article"


@pytest.fixture
def policy() -> CrawlPolicy:
    """Fast limits for tests: short timeouts, one retry, a 1 MB cap."""
    return CrawlPolicy(
        timeout_s=0.5,
        total_timeout_s=5.0,
        retries=1,
        backoff_s=0.01,
        max_bytes=1_000_000,
        per_host_rate=500.0,
        per_host_concurrency=4,
    )
