"""OpenAI-compatible routes on the kserve ModelServer app, at KServe's paths (``/openai/v1/...``).

kserve 0.21's own OpenAI layer imports vLLM's types and registers no route without vLLM, so the
project serves these itself: ``models``, ``completions``, ``chat/completions`` (streaming as SSE,
ending with ``data: [DONE]``), ``embeddings`` and ``rerank`` (vLLM's and KServe's rerank shape).
Responses are built with the ``openai`` package's own pydantic types, so they are the wire shapes
its SDK parses. Errors come back as ``{"error": {"message", "type", "param", "code"}}``: bad input
raised anywhere below a route, and an unknown path or method under ``/openai/`` too (FastAPI's
default ``{"detail": ...}`` and kserve's ``{"error": "..."}`` are for the V1/V2 routes).

Models say what they can do by implementing ``ChatModel``, ``EmbeddingModel`` or ``RerankModel``;
this module knows nothing about how they do it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable
from http import HTTPStatus
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from kserve.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from twinops.serving.engine import SamplingParams, TextDelta
from twinops.serving.protocol.errors import BadRequest

OPENAI_ROOT = "/openai"
OPENAI_PREFIX = f"{OPENAI_ROOT}/v1"
HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
OWNED_BY = "twinops"


# --- requests -----------------------------------------------------------------------------------
class _Request(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do (clients send vendor extras).
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class _GenerationRequest(_Request):
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="One choice per request (n > 1 is not supported).")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(
        None,
        description="Accepted, not applied: requests share decoding steps; no seed fixes one's draws.",
    )
    user: str | None = None

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens or default_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(s for s in stop if s),
        )

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    author_id: str | None = Field(None, description="twinops extension: whose documents ground the answer.")

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        params = super().sampling(default_max_tokens)
        if self.max_completion_tokens:
            params = params.model_copy(update={"max_tokens": self.max_completion_tokens})
        return params


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("send one prompt per request (a list of exactly one string)")
        return prompt

    @property
    def text(self) -> str:
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt


class EmbeddingRequest(_Request):
    input: str | list[str]
    # The openai SDK asks for base64 by default (little-endian float32), and decodes it itself.
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("input is an empty list: send at least one text")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class RerankDocument(BaseModel):
    text: str


class RerankRequest(_Request):
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


# --- what models implement ---------------------------------------------------------------------
class ChatModel(ABC):
    """A model that answers chat messages and plain prompts, token by token."""

    name: str
    default_max_tokens: int = 128

    @abstractmethod
    def chat(self, request: ChatCompletionRequest, params: SamplingParams) -> AsyncIterator[TextDelta]:
        """Deltas of the answer; raise ``BadRequest`` before the first one for bad input."""

    @abstractmethod
    def complete(self, prompt: str, params: SamplingParams) -> AsyncIterator[TextDelta]:
        """Deltas of a plain-prompt completion."""


class EmbeddingModel(ABC):
    name: str

    @abstractmethod
    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """One vector per text, and the number of tokens read."""


class RerankModel(ABC):
    name: str

    @abstractmethod
    async def rerank(self, query: str, documents: list[str]) -> list[float]:
        """One relevance score per document, in the documents' order."""


# --- errors ------------------------------------------------------------------------------------
def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == HTTPStatus.NOT_FOUND:
        kind = "not_found_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(status_code=status, content=body)


class _OpenAIRoute(APIRoute):
    """A route whose bad input (``BadRequest``, kserve's ``InvalidInput``), raised by the handler or a
    model below it, answers in OpenAI's shape rather than through kserve's app-wide V1/V2 handler."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidInput as error:
                status = getattr(error, "status", HTTPStatus.BAD_REQUEST)
                return openai_error(status, str(error), param=getattr(error, "param", None))

        return answer


def _validation_message(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    return (f"{where}: {message}" if where else message), (where or None)


# --- routes ------------------------------------------------------------------------------------
class OpenAIRoutes:
    """The ``/openai/v1`` router over a set of models (looked up by the request's ``model``)."""

    def __init__(self, models: Iterable[object]):
        self.models: dict[str, object] = {model.name: model for model in models}  # type: ignore[attr-defined]
        self.created = int(time.time())
        self.routes: list[APIRoute] = []

    def router(self) -> APIRouter:
        router = APIRouter(prefix=OPENAI_PREFIX, tags=["OpenAI"], route_class=_OpenAIRoute)
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

    def _card(self, name: str) -> dict:
        from openai.types import Model

        return Model(id=name, object="model", created=self.created, owned_by=OWNED_BY).model_dump()

    async def list_models(self) -> dict:
        return {"object": "list", "data": [self._card(name) for name in self.models]}

    async def get_model(self, model_name: str):
        if model_name not in self.models:
            return self._unknown_model(model_name)
        return self._card(model_name)

    def _unknown_model(self, name: str) -> JSONResponse:
        served = ", ".join(sorted(self.models)) or "none"
        return openai_error(
            HTTPStatus.NOT_FOUND,
            f"model {name!r} is not served here: use one of {served} (GET {OPENAI_PREFIX}/models)",
            param="model",
            code="model_not_found",
        )

    async def _parse(self, request: Request, kind: type[BaseModel]):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return openai_error(
                HTTPStatus.BAD_REQUEST, "the request body is not valid JSON: send a JSON object"
            )
        if not isinstance(body, dict):
            return openai_error(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
        try:
            return kind.model_validate(body)
        except ValidationError as error:
            message, param = _validation_message(error)
            return openai_error(HTTPStatus.BAD_REQUEST, message, param=param)

    def _model(self, name: str, capability: type, label: str):
        model = self.models.get(name)
        if isinstance(model, capability):
            return model
        if model is None:
            return self._unknown_model(name)
        able = ", ".join(sorted(n for n, m in self.models.items() if isinstance(m, capability))) or "none"
        return openai_error(
            HTTPStatus.BAD_REQUEST,
            f"model {name!r} does not serve {label}: models here that do: {able}",
            param="model",
            code="model_not_supported",
        )

    async def _resolve(self, request: Request, kind: type[BaseModel], capability: type, label: str):
        """(parsed request, model), or (error response, None) for a bad body or model."""
        parsed = await self._parse(request, kind)
        if isinstance(parsed, JSONResponse):
            return parsed, None
        model = self._model(parsed.model, capability, label)
        if isinstance(model, JSONResponse):
            return model, None
        return parsed, model

    # chat and completions share everything but the prompt
    async def chat_completions(self, request: Request):
        parsed, model = await self._resolve(request, ChatCompletionRequest, ChatModel, "chat completions")
        if model is None:
            return parsed
        params = parsed.sampling(model.default_max_tokens)
        return await self._respond(parsed, lambda: model.chat(parsed, params), chat=True)

    async def completions(self, request: Request):
        parsed, model = await self._resolve(request, CompletionRequest, ChatModel, "completions")
        if model is None:
            return parsed
        params = parsed.sampling(16)
        return await self._respond(parsed, lambda: model.complete(parsed.text, params), chat=False)

    async def _respond(
        self, parsed: _GenerationRequest, start: Callable[[], AsyncIterator[TextDelta]], *, chat: bool
    ):
        response_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        # Starting the model and awaiting its first delta happen here, so bad input (raised by
        # either) is a 4xx in OpenAI's shape, not a broken stream.
        try:
            deltas = start()
            first = await anext(deltas)
        except StopAsyncIteration:
            first = TextDelta(finish_reason="stop")
        if parsed.stream:
            stream = _sse(self._chunks(parsed, response_id, first, deltas, chat=chat))
            return StreamingResponse(stream, media_type="text/event-stream")
        pieces, last = [first.text], first
        async for delta in deltas:
            pieces.append(delta.text)
            last = delta
        return self._complete_response(parsed, response_id, "".join(pieces), last, chat=chat)

    def _complete_response(self, parsed, response_id: str, text: str, last: TextDelta, *, chat: bool) -> dict:
        from openai.types import Completion, CompletionChoice, CompletionUsage
        from openai.types.chat import ChatCompletion, ChatCompletionMessage
        from openai.types.chat.chat_completion import Choice

        usage = CompletionUsage(
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            total_tokens=last.prompt_tokens + last.completion_tokens,
        )
        reason = last.finish_reason or "stop"
        if chat:
            response = ChatCompletion(
                id=response_id,
                object="chat.completion",
                created=int(time.time()),
                model=parsed.model,
                choices=[
                    Choice(
                        index=0,
                        finish_reason=reason,
                        message=ChatCompletionMessage(role="assistant", content=text),
                    )
                ],
                usage=usage,
            )
        else:
            response = Completion(
                id=response_id,
                object="text_completion",
                created=int(time.time()),
                model=parsed.model,
                choices=[CompletionChoice(index=0, text=text, finish_reason=reason)],
                usage=usage,
            )
        # Extensions (RAG sources, timings, request id) ride along as extra top-level fields.
        return {**response.model_dump(exclude_none=True), **last.extra}

    async def _chunks(
        self, parsed, response_id: str, first: TextDelta, deltas: AsyncIterator[TextDelta], *, chat: bool
    ) -> AsyncIterator[dict]:
        from openai.types import Completion, CompletionChoice, CompletionUsage
        from openai.types.chat import ChatCompletionChunk
        from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

        created = int(time.time())

        def chunk(delta: TextDelta, *, role: bool = False) -> dict:
            if chat:
                body = ChatCompletionChunk(
                    id=response_id,
                    object="chat.completion.chunk",
                    created=created,
                    model=parsed.model,
                    choices=[
                        Choice(
                            index=0,
                            delta=ChoiceDelta(role="assistant" if role else None, content=delta.text),
                            finish_reason=delta.finish_reason,
                        )
                    ],
                )
            else:
                body = Completion(
                    id=response_id,
                    object="text_completion",
                    created=created,
                    model=parsed.model,
                    # The SDK's type requires finish_reason, but every chunk before the last has none
                    # (OpenAI streams null): build the choice without validating it.
                    choices=[
                        CompletionChoice.model_construct(
                            index=0, text=delta.text, finish_reason=delta.finish_reason, logprobs=None
                        )
                    ],
                )
            return {**body.model_dump(exclude_none=True), **(delta.extra if delta.finish_reason else {})}

        last = first
        yield chunk(first, role=True)
        async for delta in deltas:
            last = delta
            yield chunk(delta)
        if parsed.include_usage:
            usage = CompletionUsage(
                prompt_tokens=last.prompt_tokens,
                completion_tokens=last.completion_tokens,
                total_tokens=last.prompt_tokens + last.completion_tokens,
            )
            kind = "chat.completion.chunk" if chat else "text_completion"
            yield {
                "id": response_id,
                "object": kind,
                "created": created,
                "model": parsed.model,
                "choices": [],
                "usage": usage.model_dump(),
            }

    async def embeddings(self, request: Request):
        from openai.types import CreateEmbeddingResponse, Embedding
        from openai.types.create_embedding_response import Usage

        parsed, model = await self._resolve(request, EmbeddingRequest, EmbeddingModel, "embeddings")
        if model is None:
            return parsed
        vectors, tokens = await model.embed(parsed.texts)
        body = CreateEmbeddingResponse(
            object="list",
            model=parsed.model,
            data=[Embedding(object="embedding", index=i, embedding=v) for i, v in enumerate(vectors)],
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        ).model_dump()
        if parsed.encoding_format == "base64":
            for item, vector in zip(body["data"], vectors, strict=True):
                item["embedding"] = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode(
                    "ascii"
                )
        return body

    async def rerank(self, request: Request):
        parsed, model = await self._resolve(request, RerankRequest, RerankModel, "rerank")
        if model is None:
            return parsed
        texts = parsed.texts
        scores = await model.rerank(parsed.query, texts)
        order = sorted(range(len(texts)), key=lambda i: -scores[i])[: parsed.top_n or len(texts)]
        results = [
            {
                "index": i,
                **({"document": {"text": texts[i]}} if parsed.return_documents else {}),
                "relevance_score": float(scores[i]),
            }
            for i in order
        ]
        return {"id": f"rerank-{uuid.uuid4().hex}", "model": parsed.model, "results": results}


async def _sse(chunks: AsyncIterator[dict]) -> AsyncIterator[str]:
    """Server-sent events: one ``data:`` line per chunk, then ``data: [DONE]``."""
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except BadRequest as error:
        yield f"data: {json.dumps({'error': {'message': str(error), 'type': 'invalid_request_error'}})}\n\n"
    except Exception as error:  # headers are sent: the error can only travel in the stream
        message = f"generation failed: {type(error).__name__}: {error}"
        yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
    yield "data: [DONE]\n\n"


def register_openai_routes(app: FastAPI, models: Iterable[object]) -> OpenAIRoutes:
    """Mount the routes for ``models`` on ``app`` (the kserve ModelServer's FastAPI app)."""
    routes = OpenAIRoutes(models)
    app.include_router(routes.router())
    # After the routes (a path they serve with another method is a 405 from here, not FastAPI's).
    for path in (OPENAI_ROOT, f"{OPENAI_ROOT}/{{path:path}}"):
        app.add_api_route(path, routes.unknown_route, methods=HTTP_METHODS, include_in_schema=False)
    return routes
