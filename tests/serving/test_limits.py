"""What one client can make a server hold (issue 25, bounded servers): a body past the limit is a 413
and a request past the in-flight limit a 429 with Retry-After, both in the protocol's shape and
counted, while the server keeps answering everyone else; probes are never shed."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from twinops.serving.limits import RETRY_AFTER_SECONDS, RequestLimits
from twinops.serving.router import RouterConfig, create_app, parse_args


def _gated_app(gate: asyncio.Event, entered: list[str]) -> Starlette:
    async def slow(request: Request) -> JSONResponse:
        body = await request.body()
        entered.append(request.url.path)
        await gate.wait()
        return JSONResponse({"bytes": len(body)})

    async def streamed(request: Request) -> StreamingResponse:
        body = await request.body()

        async def chunks():
            for part in (b"got ", str(len(body)).encode()):
                yield part

        return StreamingResponse(chunks())

    async def ready(_request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    return Starlette(
        routes=[
            Route("/openai/v1/chat/completions", slow, methods=["POST"]),
            Route("/v2/models/m/infer", slow, methods=["POST"]),
            Route("/v2/models/m/stream", streamed, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


def _limited(gate: asyncio.Event, entered: list[str], **limits) -> httpx.AsyncClient:
    app = RequestLimits(_gated_app(gate, entered), server="llm", **limits)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server")


def test_a_body_past_the_limit_is_a_413_in_each_protocols_shape_declared_or_chunked() -> None:
    async def scenario():
        gate, entered = asyncio.Event(), []
        gate.set()
        async with _limited(gate, entered, max_body_bytes=1000) as client:
            openai = await client.post("/openai/v1/chat/completions", content=b"x" * 1001)
            v2 = await client.post("/v2/models/m/infer", content=b"x" * 1001)

            async def chunked():  # no Content-Length: counted while it streams in
                for _ in range(20):
                    yield b"y" * 100

            streamed = await client.post("/v2/models/m/infer", content=chunked())
            fits = await client.post("/v2/models/m/infer", content=b"x" * 1000)

            async def small():
                yield b"z" * 300

            replayed = await client.post("/v2/models/m/stream", content=small())
        return openai, v2, streamed, fits, replayed, entered

    openai, v2, streamed, fits, replayed, entered = asyncio.run(scenario())
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "body_too_large"
    assert "limit of 1000 bytes" in openai.json()["error"]["message"]
    assert v2.status_code == 413 and "limit of 1000 bytes" in v2.json()["error"]
    assert streamed.status_code == 413
    assert entered == ["/v2/models/m/infer"], "no refused body reached the app"
    assert fits.status_code == 200 and fits.json() == {"bytes": 1000}
    # A chunked body within the limit reaches the app whole, and a streamed answer still streams.
    assert replayed.status_code == 200 and replayed.text == "got 300"


def test_past_the_in_flight_limit_a_request_is_a_429_with_retry_after_and_probes_still_answer() -> None:
    async def scenario():
        gate, entered = asyncio.Event(), []
        async with _limited(gate, entered, max_in_flight=2) as client:
            held = [
                asyncio.create_task(client.post("/openai/v1/chat/completions", content=b"{}"))
                for _ in range(2)
            ]
            while len(entered) < 2:
                await asyncio.sleep(0.01)
            shed = await client.post("/openai/v1/chat/completions", content=b"{}")
            probe = await client.get("/v2/health/ready")
            gate.set()
            answered = [await task for task in held]
            after = await client.post("/v2/models/m/infer", content=b"{}")
        return shed, probe, answered, after

    shed, probe, answered, after = asyncio.run(scenario())
    assert shed.status_code == 429 and shed.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert shed.json()["error"]["code"] == "too_many_requests"
    assert "answering 2 requests" in shed.json()["error"]["message"]
    assert probe.status_code == 200, "a busy server is not a dead one"
    assert [r.status_code for r in answered] == [200, 200], "the requests in flight are not dropped"
    assert after.status_code == 200, "the slot is free again once they finish"


def test_the_router_bounds_what_it_reads_before_forwarding() -> None:
    """The router reads each body whole to forward it: a huge one is refused before it is read,
    and nothing reaches the backend (here an address nothing listens on)."""

    async def scenario():
        app = create_app(RouterConfig(stable="http://127.0.0.1:9"), max_body_bytes=64)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://router"
        ) as client:
            return await client.post("/openai/v1/chat/completions", content=b"x" * 65)

    refused = asyncio.run(scenario())
    assert refused.status_code == 413 and refused.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(SystemExit):
        parse_args(["--stable", "http://x", "--max_in_flight", "0"])


@pytest.mark.slow
def test_the_llm_server_refuses_a_huge_body_counts_it_and_keeps_answering(llm_server) -> None:
    from tests.serving.conftest import metric, scrape

    url = f"{llm_server.openai_url}/chat/completions"
    huge = httpx.post(url, content=b"x" * (8 * 1024 * 1024 + 1), timeout=60)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    fine = httpx.post(
        url,
        json={
            "model": llm_server.model_name,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
        },
        timeout=120,
    )
    assert fine.status_code == 200 and fine.json()["choices"][0]["message"]["content"] is not None
    samples = scrape(llm_server)
    assert (
        metric(samples, "twinops_requests_shed_total", server=llm_server.model_name, reason="body_too_large")
        >= 1
    )
