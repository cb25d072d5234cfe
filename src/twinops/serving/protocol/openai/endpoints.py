"""The ``/openai/v1`` routes on the kserve ModelServer app, at KServe's paths.

kserve 0.21's own OpenAI layer imports vLLM's types and registers no route without vLLM, so the
project serves these itself: ``models``, ``completions``, ``chat/completions`` (streaming as SSE,
ending with ``data: [DONE]``), ``embeddings`` and ``rerank`` (vLLM's and KServe's rerank shape).
A route parses its body into the request type (``types``), asks the data plane (``dataplane``) for
the answer, and sends it; anything wrong is answered in OpenAI's shape (``errors``), including an
unknown path or method under ``/openai/``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from http import HTTPStatus
from typing import TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from twinops.errors import first_problem
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai.dataplane import OPENAI_PREFIX, Generation, OpenAIDataPlane
from twinops.serving.protocol.openai.errors import OpenAIRoute, error_body, openai_error
from twinops.serving.protocol.openai.types import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
)

OPENAI_ROOT = OPENAI_PREFIX.removesuffix("/v1")
HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
Parsed = TypeVar("Parsed", bound=BaseModel)


async def parse(request: Request, kind: type[Parsed]) -> Parsed:
    """The body as ``kind``, or a ``BadRequest`` naming the first thing wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON: send a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return kind.model_validate(body)
    except ValidationError as error:
        problem = first_problem(error)
        raise BadRequest(problem.line(), param=problem.where or None) from None


class OpenAIRoutes:
    """The ``/openai/v1`` router over a data plane."""

    def __init__(self, dataplane: OpenAIDataPlane):
        self.dataplane = dataplane
        self.routes: list[APIRoute] = []

    def router(self) -> APIRouter:
        router = APIRouter(prefix=OPENAI_PREFIX, tags=["OpenAI"], route_class=OpenAIRoute)
        router.add_api_route("/models", self.list_models, methods=["GET"])
        router.add_api_route("/models/{model_name}", self.get_model, methods=["GET"])
        router.add_api_route("/chat/completions", self.chat_completions, methods=["POST"])
        router.add_api_route("/completions", self.completions, methods=["POST"])
        router.add_api_route("/embeddings", self.embeddings, methods=["POST"])
        router.add_api_route("/rerank", self.rerank, methods=["POST"])
        self.routes = [route for route in router.routes if isinstance(route, APIRoute)]
        return router

    async def unknown_route(self, request: Request) -> JSONResponse:
        """Any path or method under ``/openai`` that no route serves: 404 or 405, in OpenAI's shape."""
        path, method = request.url.path, request.method
        allowed = sorted({m for route in self.routes if route.path_regex.match(path) for m in route.methods})
        if allowed:
            reply = openai_error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on {path}: use {', '.join(allowed)}",
                code="method_not_allowed",
            )
            reply.headers["allow"] = ", ".join(allowed)
            return reply
        served = ", ".join(sorted({route.path for route in self.routes}))
        return openai_error(
            HTTPStatus.NOT_FOUND,
            f"no OpenAI route {method} {path}: the routes here are {served}",
            code="unknown_url",
        )

    async def list_models(self) -> dict:
        return self.dataplane.cards()

    async def get_model(self, model_name: str) -> dict:
        return self.dataplane.card(model_name)

    async def chat_completions(self, request: Request):
        return await _send(await self.dataplane.chat(await parse(request, ChatCompletionRequest)))

    async def completions(self, request: Request):
        return await _send(await self.dataplane.complete(await parse(request, CompletionRequest)))

    async def embeddings(self, request: Request) -> dict:
        return await self.dataplane.embed(await parse(request, EmbeddingRequest))

    async def rerank(self, request: Request) -> dict:
        return await self.dataplane.rerank(await parse(request, RerankRequest))


async def _send(generation: Generation):
    if generation.parsed.stream:
        return StreamingResponse(_sse(generation.chunks()), media_type="text/event-stream")
    return await generation.response()


async def _sse(chunks: AsyncIterator[dict]) -> AsyncIterator[str]:
    """Server-sent events: one ``data:`` line per chunk, then ``data: [DONE]``."""
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except BadRequest as error:
        body = error_body(error.status, str(error), param=error.param, code=error.code)
        yield f"data: {json.dumps(body)}\n\n"
    except Exception as error:  # headers are sent: the error can only travel in the stream
        message = f"generation failed: {type(error).__name__}: {error}"
        body = error_body(HTTPStatus.INTERNAL_SERVER_ERROR, message)
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def register_openai_routes(app: FastAPI, models: Iterable[object]) -> OpenAIRoutes:
    """Mount the routes for ``models`` on ``app`` (the kserve ModelServer's FastAPI app)."""
    routes = OpenAIRoutes(OpenAIDataPlane(models))
    app.include_router(routes.router())
    # After the routes (a path they serve with another method is a 405 from here, not FastAPI's).
    for path in (OPENAI_ROOT, f"{OPENAI_ROOT}/{{path:path}}"):
        app.add_api_route(path, routes.unknown_route, methods=HTTP_METHODS, include_in_schema=False)
    return routes
