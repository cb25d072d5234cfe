"""The OpenAI data plane: which models are served here, and the responses they give.

The routes (``endpoints``) parse a request and hand it here; this module finds the model by the
request's ``model`` and the capability the route needs (an unknown model is a 404, one that cannot
do the work a 400, each naming the models that can), runs it, and builds the response with the
``openai`` package's own pydantic types, so it is the wire shape its SDK parses. It knows nothing
about HTTP beyond the status of its errors, and nothing about how a model does its work.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from http import HTTPStatus
from typing import TypeVar

import numpy as np

from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai.models import ChatModel, EmbeddingModel, RerankModel
from twinops.serving.protocol.openai.types import (
    COMPLETION_DEFAULT_MAX_TOKENS,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    GenerationRequest,
    RerankRequest,
)
from twinops.serving.protocol.types import TextDelta

OPENAI_PREFIX = "/openai/v1"
OWNED_BY = "twinops"
Capability = TypeVar("Capability")


class Generation:
    """A started generation: its first delta is in hand (so bad input has already been raised), and
    the rest follow as a whole response or as stream chunks."""

    def __init__(
        self, parsed: GenerationRequest, first: TextDelta, rest: AsyncIterator[TextDelta], *, chat: bool
    ):
        self.parsed = parsed
        self.first = first
        self.rest = rest
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"

    async def response(self) -> dict:
        from openai.types import Completion, CompletionChoice
        from openai.types.chat import ChatCompletion, ChatCompletionMessage
        from openai.types.chat.chat_completion import Choice

        pieces, last = [self.first.text], self.first
        async for delta in self.rest:
            pieces.append(delta.text)
            last = delta
        text, reason, model = "".join(pieces), last.finish_reason or "stop", self.parsed.model
        if self.chat:
            message = ChatCompletionMessage(role="assistant", content=text)
            response = ChatCompletion(
                id=self.id,
                object="chat.completion",
                created=int(time.time()),
                model=model,
                choices=[Choice(index=0, finish_reason=reason, message=message)],
                usage=_usage(last),
            )
        else:
            response = Completion(
                id=self.id,
                object="text_completion",
                created=int(time.time()),
                model=model,
                choices=[CompletionChoice(index=0, text=text, finish_reason=reason)],
                usage=_usage(last),
            )
        # Extensions (RAG sources, timings, request id) ride along as extra top-level fields.
        return {**response.model_dump(exclude_none=True), **last.extra}

    async def chunks(self) -> AsyncIterator[dict]:
        """Stream chunks: the first names the role, the last carries the extensions, and a usage
        chunk follows when the request asked for one (``stream_options.include_usage``)."""
        created = int(time.time())
        last = self.first
        yield self._chunk(self.first, created, role=True)
        async for delta in self.rest:
            last = delta
            yield self._chunk(delta, created)
        if self.parsed.include_usage:
            yield {
                "id": self.id,
                "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": created,
                "model": self.parsed.model,
                "choices": [],
                "usage": _usage(last).model_dump(),
            }

    def _chunk(self, delta: TextDelta, created: int, *, role: bool = False) -> dict:
        from openai.types import Completion, CompletionChoice
        from openai.types.chat import ChatCompletionChunk
        from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

        if self.chat:
            body = ChatCompletionChunk(
                id=self.id,
                object="chat.completion.chunk",
                created=created,
                model=self.parsed.model,
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
                id=self.id,
                object="text_completion",
                created=created,
                model=self.parsed.model,
                # The SDK's type requires finish_reason, but every chunk before the last has none
                # (OpenAI streams null): build the choice without validating it.
                choices=[
                    CompletionChoice.model_construct(
                        index=0, text=delta.text, finish_reason=delta.finish_reason, logprobs=None
                    )
                ],
            )
        return {**body.model_dump(exclude_none=True), **(delta.extra if delta.finish_reason else {})}


def _usage(last: TextDelta):
    from openai.types import CompletionUsage

    return CompletionUsage(
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
        total_tokens=last.prompt_tokens + last.completion_tokens,
    )


class OpenAIDataPlane:
    """The models served under ``/openai/v1``, by name, and the work each route asks of them."""

    def __init__(self, models: Iterable[object]):
        self.models: dict[str, object] = {model.name: model for model in models}  # type: ignore[attr-defined]
        self.created = int(time.time())

    # --- models -------------------------------------------------------------------------------
    def card(self, name: str) -> dict:
        from openai.types import Model

        if name not in self.models:
            raise self._unknown_model(name)
        return Model(id=name, object="model", created=self.created, owned_by=OWNED_BY).model_dump()

    def cards(self) -> dict:
        return {"object": "list", "data": [self.card(name) for name in self.models]}

    def model(self, name: str, capability: type[Capability], label: str) -> Capability:
        """The model called ``name`` if it can do ``label`` (a ``capability`` subclass), else a
        ``BadRequest`` naming the models that can."""
        model = self.models.get(name)
        if isinstance(model, capability):
            return model
        if model is None:
            raise self._unknown_model(name)
        able = ", ".join(sorted(n for n, m in self.models.items() if isinstance(m, capability))) or "none"
        raise BadRequest(
            f"model {name!r} does not serve {label}: models here that do: {able}",
            param="model",
            code="model_not_supported",
        )

    def _unknown_model(self, name: str) -> BadRequest:
        served = ", ".join(sorted(self.models)) or "none"
        return BadRequest(
            f"model {name!r} is not served here: use one of {served} (GET {OPENAI_PREFIX}/models)",
            param="model",
            status=HTTPStatus.NOT_FOUND,
            code="model_not_found",
        )

    # --- work ---------------------------------------------------------------------------------
    async def chat(self, parsed: ChatCompletionRequest) -> Generation:
        model = self.model(parsed.model, ChatModel, "chat completions")
        params = parsed.sampling(model.default_max_tokens)
        return await _start(parsed, lambda: model.chat(parsed, params), chat=True)

    async def complete(self, parsed: CompletionRequest) -> Generation:
        model = self.model(parsed.model, ChatModel, "completions")
        params = parsed.sampling(COMPLETION_DEFAULT_MAX_TOKENS)
        return await _start(parsed, lambda: model.complete(parsed.text, params), chat=False)

    async def embed(self, parsed: EmbeddingRequest) -> dict:
        from openai.types import CreateEmbeddingResponse, Embedding
        from openai.types.create_embedding_response import Usage

        model = self.model(parsed.model, EmbeddingModel, "embeddings")
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

    async def rerank(self, parsed: RerankRequest) -> dict:
        model = self.model(parsed.model, RerankModel, "rerank")
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


async def _start(parsed: GenerationRequest, start, *, chat: bool) -> Generation:
    # Starting the model and awaiting its first delta happen before any byte is sent, so bad input
    # (raised by either) is a 4xx in OpenAI's shape, not a broken stream.
    deltas = start()
    try:
        first = await anext(deltas)
    except StopAsyncIteration:
        first = TextDelta(finish_reason="stop")
    return Generation(parsed, first, deltas, chat=chat)
