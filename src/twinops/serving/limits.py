"""What one client can make a twinops server hold: a body size and a number of requests in flight.

kserve's ModelServer (uvicorn under FastAPI) reads any body it is sent and queues every request it
accepts: one 1 GB body, or a thousand slow generations, exhausts the pod for every other client. Each
server (the LLM, reranker, embedder and RAG runtimes, and the local weighted router) wraps its app in
``RequestLimits``, an ASGI middleware that answers, before the app sees the request:

- **413** when the body passes ``max_body_bytes`` (by its Content-Length, or while a chunked body
  streams in; a large body is never held whole);
- **429** with ``Retry-After`` when ``max_in_flight`` requests are already being answered (a
  streamed answer counts until its last byte), so a client backs off and the queue stays bounded.

Both answer in the protocol's shape (OpenAI's ``{"error": {...}}`` under ``/openai/``, kserve's
``{"error": "..."}`` elsewhere) and are counted in ``twinops_requests_shed_total{reason}``. Probes and
``/metrics`` are never shed: a busy server is not a dead one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from twinops.serving.metrics import REQUESTS_SHED
from twinops.serving.protocol.openai.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A chat request with a long context is tens of KB; a V2 batch of embedder inputs a few MB.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# Far above what continuous batching runs at once on a pod (--max_batch_size): the rest wait in line.
DEFAULT_MAX_IN_FLIGHT = 64
RETRY_AFTER_SECONDS = 1
# Liveness, readiness and scraping are answered however busy the server is.
_NEVER_SHED = ("/v2/health", "/v1/models", "/metrics", "/healthz", "/readyz")


def _never_shed(path: str) -> bool:
    return path == "/" or path.startswith(_NEVER_SHED) or path.endswith("/ready")


class RequestLimits:
    """ASGI middleware bounding body size and requests in flight (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        server: str = "server",
    ) -> None:
        if max_body_bytes < 1 or max_in_flight < 1:
            raise ValueError("max_body_bytes and max_in_flight must be at least 1")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.server = server
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _never_shed(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(
                scope,
                send,
                429,
                "too_many_requests",
                f"the {self.server} is answering {self.in_flight} requests, its limit: retry in "
                f"{RETRY_AFTER_SECONDS} s (or add replicas)",
            )
            return
        self.in_flight += 1
        try:
            declared = _declared_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._too_large(scope, send)
                return
            if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                body = await self._read_bounded(receive)
                if body is None:
                    await self._too_large(scope, send)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        """A chunked body up to the limit, or None as soon as it passes it."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await self._refuse(
            scope,
            send,
            413,
            "body_too_large",
            f"the request body passes the {self.server}'s limit of {self.max_body_bytes} bytes: send "
            "less per request (split the batch)",
        )

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str, message: str) -> None:
        REQUESTS_SHED.labels(server=self.server, reason=reason).inc()
        openai = scope.get("path", "").startswith("/openai/")
        body = error_body(status, message, code=reason) if openai else {"error": message}
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 429:
            headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the real one (which reports the
    client's disconnect, as a streamed answer listens for)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
