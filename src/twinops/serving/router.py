"""A weighted router in front of two LLM servers: the local stand-in for KServe's traffic split.

``python -m twinops.serving.router --stable URL --canary URL --canary_percent N`` forwards every
request under ``/openai/v1/``, ``/v1/`` and ``/v2/`` to the canary with probability N/100 and to
the stable server otherwise, streaming the answer back (SSE included) with the header
``x-twinops-backend: stable|canary`` saying which one answered. A backend that cannot be reached
is a 502 in the OpenAI error shape, with the same header.

One twin at a time (``--canary_model NAME``): when the stable server serves many twins (one base,
an adapter per author), the canary is one twin's new version, and only the requests that name
that model (the OpenAI body's ``model``, or ``/v2/models/NAME/...``, ``/v1/models/NAME:...``) are
split; every other twin's requests go to the stable server whatever the percent. Promoting such a
canary keeps the stable server (it follows the twin's ``champion`` alias, which the release moves)
and drops the canary; without ``canary_model`` the canary server becomes the stable one.

Admin routes, for ``twinops rollout`` (``twinops.rollout.local``):

- ``GET /router/state``: ``{stable, canary, canary_percent, canary_model, answered: {stable, canary}}``;
- ``POST /router/config`` with any of ``canary_percent`` (0..100), ``stable``, ``canary`` (URLs;
  ``null`` removes the canary), ``canary_model`` or ``promote: true`` (see above; the percent goes
  to 0). A percent outside 0..100, or one above 0 without a canary, is a 400.

``GET /metrics`` (Prometheus' text format): ``twinops_router_requests_total{backend, code}`` and
``twinops_router_request_duration_seconds{backend}``, per answer (a 502 of an unreachable backend
included), which ``twinops rollout --router`` reads when ``TWINOPS_PROMETHEUS_URL`` is set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import time
from collections.abc import Sequence
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from twinops.serving.clients import BACKEND_HEADER
from twinops.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, RequestLimits
from twinops.serving.metrics import RouterMetrics
from twinops.serving.server import add_request_limits

ROUTED_PREFIXES = ("openai", "v1", "v2")
# The model a KServe V1/V2 path names: /v2/models/NAME[/versions/N]/infer, /v1/models/NAME:predict.
_PATH_MODEL = re.compile(r"^/v[12]/models/(?P<name>[^/:]+)")
# Hop-by-hop headers, and the ones httpx recomputes for the decoded body.
_DROPPED_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "trailer",
    "content-length",
    "content-encoding",
    "host",
}


class RouterConfig(BaseModel):
    stable: str
    canary: str | None = None
    canary_percent: int = Field(0, ge=0, le=100)
    canary_model: str | None = Field(
        None, description="Split only the requests naming this model (one twin's canary); None: all."
    )


def requested_model(path: str, body: bytes) -> str | None:
    """The model a request names: its V1/V2 path's, else its JSON body's ``model``; None if neither."""
    match = _PATH_MODEL.match(path)
    if match:
        return match["name"]
    if not body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model if isinstance(model, str) else None


class ConfigChange(BaseModel):
    model_config = {"extra": "forbid"}

    canary_percent: int | None = Field(None, ge=0, le=100)
    stable: str | None = None
    canary: str | None = None
    canary_model: str | None = None
    promote: bool = False


def create_app(
    config: RouterConfig,
    *,
    seed: int | None = None,
    timeout: float = 300.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> FastAPI:
    client = httpx.AsyncClient(timeout=timeout)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await client.aclose()

    app = FastAPI(title="twinops canary router", docs_url=None, redoc_url=None, lifespan=lifespan)
    # The router reads each body whole before forwarding it: the same bounds as the servers behind it.
    app.add_middleware(
        RequestLimits, max_body_bytes=max_body_bytes, max_in_flight=max_in_flight, server="router"
    )
    chooser = random.Random(seed)  # noqa: S311 - traffic splitting, not cryptography
    answered = {"stable": 0, "canary": 0}
    metrics = RouterMetrics()

    @app.get("/router/state")
    async def state() -> dict[str, Any]:
        return {**config.model_dump(), "answered": dict(answered)}

    @app.post("/router/config")
    async def change(request: Request):
        try:
            body = ConfigChange.model_validate(await request.json())
        except ValueError as error:
            return JSONResponse({"error": " ".join(str(error).split())[:300]}, status_code=400)
        fields = body.model_dump(exclude_unset=True)
        if fields.pop("promote", False):
            if config.canary is None:
                return JSONResponse({"error": "there is no canary to promote"}, status_code=400)
            # One twin's canary: the stable server follows that twin's champion and keeps serving
            # the others; a whole-server canary replaces the stable server.
            stable = config.stable if config.canary_model else config.canary
            fields.update(stable=stable, canary=None, canary_percent=0, canary_model=None)
        updated = config.model_copy(update=fields)
        if updated.canary is None and updated.canary_percent > 0:
            return JSONResponse({"error": "canary_percent > 0 needs a canary backend"}, status_code=400)
        for key in ("stable", "canary", "canary_percent", "canary_model"):
            setattr(config, key, getattr(updated, key))
        return config.model_dump()

    @app.get("/metrics")
    async def exported() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def forward(request: Request, path: str):
        started = time.perf_counter()
        body = await request.body()
        in_scope = (
            config.canary_model is None or requested_model(request.url.path, body) == config.canary_model
        )
        use_canary = config.canary is not None and in_scope and chooser.random() * 100 < config.canary_percent
        backend = "canary" if use_canary else "stable"
        base = (config.canary if use_canary else config.stable).rstrip("/")
        url = f"{base}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
        upstream = client.build_request(request.method, url, headers=headers, content=body)
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as error:
            message = f"the {backend} backend at {base} is unreachable ({type(error).__name__})"
            metrics.observe(backend, 502, time.perf_counter() - started)
            return JSONResponse(
                {"error": {"message": message, "type": "bad_gateway"}},
                status_code=502,
                headers={BACKEND_HEADER: backend},
            )
        answered[backend] += 1
        kept = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS}

        async def finish() -> None:  # after the last byte: a streamed answer's duration is all of it
            await response.aclose()
            metrics.observe(backend, response.status_code, time.perf_counter() - started)

        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers={**kept, BACKEND_HEADER: backend},
            background=BackgroundTask(finish),
        )

    for prefix in ROUTED_PREFIXES:
        app.add_api_route(
            f"/{prefix}/{{path:path}}", forward, methods=["GET", "POST", "PUT", "DELETE"], name=prefix
        )

    return app


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m twinops.serving.router",
        description="Split traffic between a stable and a canary LLM server by weight.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--stable", required=True, help="Base URL of the stable server.")
    parser.add_argument("--canary", default=None, help="Base URL of the canary server.")
    parser.add_argument("--canary_percent", type=int, default=0, help="Share of requests to the canary.")
    parser.add_argument(
        "--canary_model", default=None, help="Split only this model's requests (one twin's canary)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind.")
    parser.add_argument("--http_port", type=int, default=8188, help="Port to bind.")
    parser.add_argument("--seed", type=int, default=None, help="Seed of the traffic split (tests).")
    add_request_limits(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.canary_percent <= 100 or (args.canary is None and args.canary_percent > 0):
        parser.error("--canary_percent must be in 0..100, and above 0 only with --canary")
    if args.max_body_bytes < 1 or args.max_in_flight < 1:
        parser.error("--max_body_bytes and --max_in_flight must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    config = RouterConfig(
        stable=args.stable,
        canary=args.canary,
        canary_percent=args.canary_percent,
        canary_model=args.canary_model,
    )
    app = create_app(
        config, seed=args.seed, max_body_bytes=args.max_body_bytes, max_in_flight=args.max_in_flight
    )
    uvicorn.run(app, host=args.host, port=args.http_port, log_level="warning")


if __name__ == "__main__":
    main()
