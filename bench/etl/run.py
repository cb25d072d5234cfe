"""ETL benchmark: crawl throughput (concurrent vs one-by-one) and warehouse upserts per second.

1. Fetch N pages from a local 127.0.0.1 server with twinops' async Fetcher (robots.txt, per-host
   gates, size cap) and, in the same run, one by one with a plain blocking ``httpx.Client``.
   The server adds a fixed per-response latency (``--latency-ms``, default 20 ms) because a
   crawler's concurrency pays off against network round trips, which a loopback server lacks.
2. Crawl the same pages end to end with ``run_etl`` (sitemap → fetch → trafilatura → MongoDB).
3. Upsert N documents through ``DocumentRepository`` (new, then unchanged) vs raw pymongo doing
   the same work on a collection with the same indexes: one at a time (``upsert`` vs
   ``replace_one(upsert=True)``) and in the ETL sink's batches (``upsert_many`` vs ``bulk_write``).

    .venv/bin/python bench/etl/run.py [--quick] [--pages N] [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.etl import EtlJob, run_etl
from twinops.etl.http import Fetcher
from twinops.etl.jobs import CrawlPolicy
from twinops.infra.documents import DocumentRepository
from twinops.infra.mongo import connect
from twinops.settings import Settings

PARAGRAPH = (
    "Boring infrastructure wins because the people on call already know how it fails. "
    "Evaluation gates and golden sets matter more than clever tricks in the training loop. "
)


def page(n: int) -> bytes:
    body = "".join(f"<p>{PARAGRAPH} Page {n}, paragraph {k}.</p>" for k in range(6))
    return (
        f"<html><head><title>Post {n}</title></head><body><nav>Home About</nav>"
        f"<article><h1>Post {n}</h1>{body}</article><footer>(c) Ada</footer></body></html>"
    ).encode()


def _serve(pages: int, latency_s: float, ports: multiprocessing.Queue) -> None:
    """The page server, in its own process so it does not compete with the crawler for the GIL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    server.request_queue_size = 256
    base = f"http://127.0.0.1:{server.server_address[1]}"
    bodies = {f"/p/{n}.html": page(n) for n in range(pages)}
    bodies["/robots.txt"] = b"User-agent: *\nAllow: /\n"
    urls = "".join(f"<url><loc>{base}/p/{n}.html</loc></url>" for n in range(pages))
    bodies["/sitemap.xml"] = (
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = bodies.get(self.path)
            if self.path != "/robots.txt":
                time.sleep(latency_s)
            self.send_response(200 if body else 404)
            kind = "application/xml" if self.path.endswith(".xml") else "text/html; charset=utf-8"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server.RequestHandlerClass = Handler
    ports.put(server.server_address[1])
    server.serve_forever()


class Server:
    """A threaded page server with a fixed per-response delay standing in for network latency."""

    def __init__(self, pages: int, latency_s: float) -> None:
        context = multiprocessing.get_context("fork")
        ports: multiprocessing.Queue = context.Queue()
        self.process = context.Process(target=_serve, args=(pages, latency_s, ports), daemon=True)
        self.process.start()
        self.base = f"http://127.0.0.1:{ports.get(timeout=30)}"

    def urls(self, pages: int) -> list[str]:
        return [f"{self.base}/p/{n}.html" for n in range(pages)]

    def close(self) -> None:
        self.process.terminate()
        self.process.join(timeout=10)


def fetch_concurrent(urls: list[str], policy: CrawlPolicy) -> float:
    async def main() -> int:
        async with Fetcher(policy) as fetcher:
            results = await asyncio.gather(*(fetcher.get(url) for url in urls))
        return len(results)

    started = time.perf_counter()
    assert asyncio.run(main()) == len(urls)
    return len(urls) / (time.perf_counter() - started)


def fetch_one_by_one(urls: list[str]) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for url in urls:
            client.get(url).raise_for_status()
    return len(urls) / (time.perf_counter() - started)


def documents(count: int, version: str) -> list[RawDocument]:
    author = Author(full_name="Bench Author")
    return [
        RawDocument(
            platform=Platform.WEB,
            category=Category.ARTICLES,
            source_url=f"https://bench.example.org/{n}",
            author_id=author.id,
            author_name=author.full_name,
            title=f"Post {n}",
            content=f"{PARAGRAPH} {version} {n}",
        )
        for n in range(count)
    ]


def upserts(settings: Settings, count: int, rounds: int) -> dict[str, float]:
    """Warehouse writes per second against raw pymongo doing the same work, median of ``rounds``
    alternating rounds, each on fresh collections with the warehouse's indexes (the raw side too):
    one document at a time (``upsert`` vs ``replace_one(upsert=True)``), and in batches of
    ``WRITE_BATCH`` as the ETL's sink writes concurrent documents (``upsert_many`` vs one unordered
    ``bulk_write`` of ``ReplaceOne``s)."""
    import statistics

    from pymongo import ReplaceOne

    from twinops.etl.runner import WRITE_BATCH

    client = connect(settings).client
    figures: dict[str, list[float]] = {}

    def timed(name: str, write, items: list) -> None:
        started = time.perf_counter()
        write(items)
        figures.setdefault(name, []).append(len(items) / (time.perf_counter() - started))

    def batches(items: list) -> list[list]:
        return [items[start : start + WRITE_BATCH] for start in range(0, len(items), WRITE_BATCH)]

    def indexed(name: str):
        DocumentRepository(client[name])  # creates the warehouse's indexes
        return client[name]["documents"]

    def run_round(index: int) -> None:
        docs = documents(count, f"v{index}")
        rows = [{"_id": doc.id, **doc.model_dump(mode="python")} for doc in docs]
        one, many = (DocumentRepository(client[f"bench-{side}-{index}"]) for side in ("one", "many"))
        raw_one, raw_many = (indexed(f"bench-raw-{side}-{index}") for side in ("one", "many"))
        timed("new", lambda ds: [one.upsert(d, "bench") for d in ds], docs)
        timed("raw", lambda rs: [raw_one.replace_one({"_id": r["_id"]}, r, upsert=True) for r in rs], rows)
        timed("unchanged", lambda ds: [one.upsert(d, "bench") for d in ds], docs)
        timed("new_batched", lambda ds: [many.upsert_many(b, "bench") for b in batches(ds)], docs)
        timed(
            "raw_batched",
            lambda rs: [
                raw_many.bulk_write([ReplaceOne({"_id": r["_id"]}, r, upsert=True) for r in b], ordered=False)
                for b in batches(rs)
            ],
            rows,
        )
        timed("unchanged_batched", lambda ds: [many.upsert_many(b, "bench") for b in batches(ds)], docs)

    for index in range(rounds):
        run_round(index)
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 pages instead of 1,000.")
    parser.add_argument("--pages", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="Server delay per page.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Alternating fetch and upsert rounds (median of each)."
    )
    parser.add_argument("--part", choices=("all", "fetch", "upserts"), default="all", help="What to measure.")
    args = parser.parse_args()
    pages = args.pages or (200 if args.quick else 1000)

    from twinops.services import mongodb
    from twinops.services.process import stop_pid

    server = Server(pages, args.latency_ms / 1000)
    policy = CrawlPolicy(concurrency=32, per_host_concurrency=32, per_host_rate=10_000.0, timeout_s=30)
    with tempfile.TemporaryDirectory(prefix="twinops-bench-etl-") as tmp:
        record = mongodb.start(Settings(home=Path(tmp) / "mongo"))
        try:
            settings = Settings(home=Path(tmp) / "home", mongodb_uri=record.uri, mongodb_database="bench")
            urls = server.urls(pages)
            if args.part in ("all", "fetch"):
                # Alternating rounds, the median of each: one round of each moved 2x between runs.
                rounds = [
                    (fetch_concurrent(urls, policy), fetch_one_by_one(urls)) for _ in range(args.rounds)
                ]
                concurrent = statistics.median([c for c, _ in rounds])
                sequential = statistics.median([s for _, s in rounds])
                print(f"pages: {pages}, simulated latency {args.latency_ms:.0f} ms/page, 127.0.0.1 server, "
                      f"median of {args.rounds} alternating rounds")  # fmt: skip
                print(f"fetch concurrent (twinops Fetcher):   {concurrent:8.1f} docs/s")
                print(f"fetch one by one (httpx.Client):      {sequential:8.1f} docs/s")
                print(f"  ratio concurrent / one-by-one:      {concurrent / sequential:8.2f}x")
            if args.part == "all":
                sitemap = f"{server.base}/sitemap.xml"
                job = EtlJob.for_author("Bench Author", [sitemap], crawl=policy.model_dump())
                started = time.perf_counter()
                summary = run_etl(job, settings)
                crawl_rate = summary.totals["new"] / (time.perf_counter() - started)
                new = summary.totals["new"]
                print(f"end-to-end run_etl (fetch+extract+db): {crawl_rate:7.1f} docs/s ({new} new)")
            if args.part == "fetch":
                return 0
            writes = upserts(settings, min(pages, 500), args.rounds)
        finally:
            stop_pid(record.pid)
            server.close()

    print(f"warehouse upserts, new:               {writes['new']:8.1f} /s")
    print(f"warehouse upserts, unchanged:         {writes['unchanged']:8.1f} /s")
    print(f"raw pymongo replace_one(upsert):      {writes['raw']:8.1f} /s")
    print(f"  ratio new upserts / raw pymongo:    {writes['new'] / writes['raw']:8.2f}x")
    print(f"warehouse upsert_many, new:           {writes['new_batched']:8.1f} /s")
    print(f"warehouse upsert_many, unchanged:     {writes['unchanged_batched']:8.1f} /s")
    print(f"raw pymongo bulk_write(ReplaceOne):   {writes['raw_batched']:8.1f} /s")
    print(f"  ratio upsert_many / raw bulk_write: {writes['new_batched'] / writes['raw_batched']:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
