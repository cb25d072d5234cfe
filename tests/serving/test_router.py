"""The local canary router over loopback: the split it keeps, what it forwards, what it says.

The backends are light HTTP servers that answer every path with their own name (and one SSE
stream), so the split is counted over many requests without loading a model; the router itself
is the real app on uvicorn. The split test uses a fixed seed and states its tolerance: with 1,000
requests at 25 %, one binomial standard deviation is 1.4 points; the test allows 4.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from tests.rollout.conftest import serve_app

from twinops.services.process import free_port
from twinops.serving.router import BACKEND_HEADER, RouterConfig, create_app

REQUESTS = 1000
TOLERANCE_POINTS = 4.0
CONCURRENCY = 8


def _backend(name: str) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = self.rfile.read(length).decode() if length else ""
            if self.path.endswith("/stream"):
                chunks = [f"data: {json.dumps({'backend': name, 'n': n})}\n\n" for n in range(3)]
                data = ("".join(chunks) + "data: [DONE]\n\n").encode()
                content_type = "text/event-stream"
            else:
                payload = {"backend": name, "method": self.command, "path": self.path, "body": received}
                data = json.dumps(payload).encode()
                content_type = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def backends() -> Iterator[dict[str, str]]:
    servers = {name: _backend(name) for name in ("stable", "canary")}
    yield {name: url for name, (_, url) in servers.items()}
    for server, _ in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def router(backends) -> Iterator[str]:
    config = RouterConfig(stable=backends["stable"], canary=backends["canary"], canary_percent=25)
    with serve_app(create_app(config, seed=20261202)) as url:
        yield url


@pytest.mark.slow
def test_split_is_within_tolerance_of_the_configured_percent(router) -> None:
    answered = {"stable": 0, "canary": 0}
    mismatched = []

    async def send_all() -> None:
        limit = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=router, timeout=30) as client:

            async def one() -> None:
                async with limit:
                    response = await client.post("/openai/v1/chat/completions", json={"model": "twin-llm"})
                backend = response.headers[BACKEND_HEADER]
                if response.json()["backend"] != backend:  # the header names who really answered
                    mismatched.append(backend)
                answered[backend] += 1

            await asyncio.gather(*(one() for _ in range(REQUESTS)))

    asyncio.run(send_all())
    state = httpx.get(f"{router}/router/state", timeout=10).json()
    share = 100 * answered["canary"] / REQUESTS
    assert abs(share - 25) <= TOLERANCE_POINTS, share
    assert mismatched == []
    assert state["answered"] == answered


@pytest.mark.slow
def test_percent_zero_and_hundred_send_everything_one_way(router) -> None:
    with httpx.Client(base_url=router, timeout=10) as client:
        for percent, expected in ((0, "stable"), (100, "canary")):
            assert client.post("/router/config", json={"canary_percent": percent}).status_code == 200
            seen = {client.get("/v2/models/twin-llm/ready").headers[BACKEND_HEADER] for _ in range(50)}
            assert seen == {expected}


def test_forwards_path_query_method_and_body(router) -> None:
    with httpx.Client(base_url=router, timeout=10) as client:
        client.post("/router/config", json={"canary_percent": 0})
        reply = client.post("/v1/models/twin-llm:predict?verbose=1", content=b'{"instances": ["hi"]}').json()
    assert reply == {
        "backend": "stable",
        "method": "POST",
        "path": "/v1/models/twin-llm:predict?verbose=1",
        "body": '{"instances": ["hi"]}',
    }


def test_streams_server_sent_events_through(router) -> None:
    with httpx.Client(base_url=router, timeout=10) as client:
        client.post("/router/config", json={"canary_percent": 100})
        with client.stream("POST", "/openai/v1/stream") as response:
            lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert [json.loads(line.removeprefix("data: "))["n"] for line in lines[:-1]] == [0, 1, 2]


def test_promote_makes_the_canary_the_stable_backend(router, backends) -> None:
    with httpx.Client(base_url=router, timeout=10) as client:
        state = client.post("/router/config", json={"promote": True}).json()
        seen = {client.get("/openai/v1/models").json()["backend"] for _ in range(20)}
    assert state == {"stable": backends["canary"], "canary": None, "canary_percent": 0, "canary_model": None}
    assert seen == {"canary"}


@pytest.mark.parametrize(
    "change",
    [{"canary_percent": 150}, {"canary_percent": -1}, {"canary": None, "canary_percent": 10}, {"bogus": 1}],
)
def test_bad_config_is_a_400_and_changes_nothing(router, change) -> None:
    with httpx.Client(base_url=router, timeout=10) as client:
        before = client.get("/router/state").json()
        response = client.post("/router/config", json=change)
        after = client.get("/router/state").json()
    assert response.status_code == 400 and response.json()["error"]
    assert after == before


def test_an_unreachable_backend_is_a_502_naming_it(backends) -> None:
    config = RouterConfig(
        stable=backends["stable"], canary=f"http://127.0.0.1:{free_port()}", canary_percent=100
    )
    with serve_app(create_app(config)) as url:
        response = httpx.post(f"{url}/openai/v1/chat/completions", json={}, timeout=10)
    assert response.status_code == 502
    assert response.headers[BACKEND_HEADER] == "canary"
    assert "canary backend" in response.json()["error"]["message"]
