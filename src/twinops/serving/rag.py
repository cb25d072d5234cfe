"""The twin with retrieval, served as a model (``twin-rag``) over the OpenAI chat API and V2.

``python -m twinops.serving.rag --llm_url URL/openai/v1 [--reranker_url URL/openai/v1]`` embeds
in-process (the embedder must be the one that built the index), searches the chunks behind the
Qdrant alias, reranks and generates through the other servers, and logs every answer to MongoDB.
Any OpenAI client talks to the twin: the answer is the message, and the response carries
``sources``, ``timings_ms`` and ``request_id`` as extra top-level fields (the last stream chunk
carries them when streaming). ``POST /feedback`` rates an answer by its request id: one vote per
authenticated voter per answer (``serving.feedback``), strict types, bounded sizes, and the time
of the server.

V2 tensors: ``question`` (BYTES [1]) and optional ``author_id`` (BYTES [1]) in; ``answer``,
``request_id`` and ``sources`` (a JSON string) out, each BYTES [1].
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from kserve import InferRequest, Model
from pydantic import ValidationError

from twinops.domain.documents import utcnow
from twinops.domain.serving import Feedback, FeedbackRequest
from twinops.errors import ConfigError, NotFound, TwinopsError
from twinops.infra.http_body import read_bounded_body
from twinops.serving import metrics
from twinops.serving.feedback import MAX_FEEDBACK_BODY_BYTES, FeedbackIdentity, Refusal
from twinops.serving.protocol import v2
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai.models import ChatModel
from twinops.serving.protocol.openai.types import ChatCompletionRequest
from twinops.serving.protocol.types import SamplingParams, TextDelta
from twinops.serving.rag_pipeline import RagAnswer, RagPipeline

log = logging.getLogger("twinops.serving")

RAG_NAME = "twin-rag"
QUESTION = v2.TensorSpec(name="question", datatype="BYTES", shape=[1])
AUTHOR = v2.TensorSpec(name="author_id", datatype="BYTES", shape=[1], optional=True)
ANSWER = v2.TensorSpec(name="answer", datatype="BYTES", shape=[1])
REQUEST_ID = v2.TensorSpec(name="request_id", datatype="BYTES", shape=[1])
SOURCES = v2.TensorSpec(name="sources", datatype="BYTES", shape=[1])


def _as_bad_request(error: TwinopsError) -> BadRequest:
    # Input the client can fix is a 400; missing data or an unreachable server is not theirs.
    status = HTTPStatus.BAD_REQUEST if isinstance(error, ConfigError) else HTTPStatus.SERVICE_UNAVAILABLE
    return BadRequest(str(error), status=status)


class TwinRAG(Model, ChatModel):
    def __init__(
        self,
        name: str,
        pipeline_factory,
        *,
        top_k: int = 4,
        candidates: int = 12,
        expansions: int = 2,
        default_max_tokens: int = 128,
        feedback_identity: FeedbackIdentity | None = None,
    ):
        super().__init__(name)
        self.feedback_identity = feedback_identity or FeedbackIdentity()
        self.default_max_tokens = default_max_tokens
        self.pipeline_factory = pipeline_factory
        self.pipeline: RagPipeline | None = None
        self.top_k = top_k
        self.candidates = candidates
        self.expansions = expansions
        self.request_log = None

    def load(self) -> bool:
        self.pipeline = self.pipeline_factory()
        self.request_log = self.pipeline.request_log
        self.ready = True
        return True

    async def ask(self, question: str, *, author_id: str | None, params: SamplingParams) -> RagAnswer:
        assert self.pipeline is not None
        try:
            answer = await self.pipeline.answer(
                question,
                author_id=author_id,
                top_k=self.top_k,
                candidates=self.candidates,
                expansions=self.expansions,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
            )
        except TwinopsError as error:
            raise _as_bad_request(error) from error
        for stage, milliseconds in answer.timings_ms.items():
            metrics.RAG_STAGE_SECONDS.labels(model=self.name, stage=stage).observe(milliseconds / 1000)
        return answer

    @staticmethod
    def _extra(answer: RagAnswer) -> dict[str, Any]:
        return {
            "request_id": answer.request_id,
            "sources": [source.model_dump(mode="json") for source in answer.sources],
            "timings_ms": answer.timings_ms,
            "author": {"id": answer.author_id, "name": answer.author_name},
            "prompt": {"id": answer.prompt_id, "version": answer.prompt_version, "hash": answer.prompt_hash},
            "model_versions": answer.models,
            **({"llm_backend": answer.llm_backend} if answer.llm_backend else {}),
        }

    async def _deltas(self, question: str, author_id: str | None, params: SamplingParams):
        answer = await self.ask(question, author_id=author_id, params=params)
        yield TextDelta(
            text=answer.answer,
            finish_reason="stop",
            completion_tokens=answer.tokens,
            extra=self._extra(answer),
        )

    # --- OpenAI -------------------------------------------------------------------------------
    def chat(self, request: ChatCompletionRequest, params: SamplingParams) -> AsyncIterator[TextDelta]:
        questions = [m.text() for m in request.messages if m.role == "user"]
        if not questions or not questions[-1].strip():
            raise BadRequest("send the question as a user message", param="messages")
        return self._deltas(questions[-1], request.author_id, params)

    def complete(self, prompt: str, params: SamplingParams) -> AsyncIterator[TextDelta]:
        return self._deltas(prompt, None, params)

    # --- V1 / V2 ------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict]:
        return [QUESTION.metadata(), AUTHOR.metadata()]

    def get_output_types(self) -> list[dict]:
        return [ANSWER.metadata(), REQUEST_ID.metadata(), SOURCES.metadata()]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            v2.check_inputs(payload, [QUESTION, AUTHOR])
            params = v2.sampling_params(v2.request_parameters(payload), self.default_max_tokens, 0.2)
            question = (v2.texts(payload, QUESTION) or [""])[0]
            author = (v2.texts(payload, AUTHOR) or [None])[0]
            answer = await self.ask(question, author_id=author, params=params)
            sources = json.dumps([s.model_dump(mode="json") for s in answer.sources])
            outputs = [
                v2.bytes_output(ANSWER.name, [answer.answer]),
                v2.bytes_output(REQUEST_ID.name, [answer.request_id]),
                v2.bytes_output(SOURCES.name, [sources]),
            ]
            return v2.response(payload, self.name, outputs)
        predictions = []
        for instance in v2.v1_instances(payload):
            question = instance if isinstance(instance, str) else (instance or {}).get("question")
            if not isinstance(question, str):
                raise BadRequest(
                    'each instance is a question string or {"question": "...", "author_id": ...}'
                )
            raw = instance if isinstance(instance, dict) else {}
            params = v2.sampling_params(raw, self.default_max_tokens, 0.2)
            answer = await self.ask(question, author_id=raw.get("author_id"), params=params)
            predictions.append({"answer": answer.answer, **self._extra(answer)})
        return {"predictions": predictions}

    # --- feedback -----------------------------------------------------------------------------
    def feedback_router(self) -> APIRouter:
        router = APIRouter(tags=["feedback"])
        router.add_api_route("/feedback", self.feedback, methods=["POST"], status_code=201)
        return router

    async def feedback(self, request: Request):
        voter = self.feedback_identity.voter(request)
        if isinstance(voter, Refusal):
            headers = {"WWW-Authenticate": "Bearer"} if voter.status == HTTPStatus.UNAUTHORIZED else None
            return JSONResponse(status_code=voter.status, content={"error": voter.message}, headers=headers)
        body = await read_bounded_body(request, MAX_FEEDBACK_BODY_BYTES)
        if body is None:
            return JSONResponse(
                status_code=413, content={"error": f"the body passes {MAX_FEEDBACK_BODY_BYTES} bytes"}
            )
        try:
            given = FeedbackRequest.model_validate_json(body)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            return JSONResponse(status_code=400, content={"error": f"{where}: {first.get('msg')}"})
        if self.request_log is None:
            return JSONResponse(status_code=503, content={"error": "this server keeps no request log"})
        feedback = Feedback(**given.model_dump(), voter=voter, created_at=utcnow())
        try:
            stored = self.request_log.add_feedback(feedback)
        except NotFound as error:
            return JSONResponse(status_code=404, content={"error": str(error)})
        return JSONResponse(status_code=201, content={"id": stored.id, "request_id": stored.request_id})


AUTHOR_CONTEXT_TTL = 300.0  # seconds; Feast materializes per feature run, not per request


def _cached(lookup, ttl: float):
    """``lookup`` remembered per author for ``ttl`` seconds: each Feast call opens a FeatureStore."""
    remembered: dict[str, tuple[float, str | None]] = {}

    def cached(author_id: str) -> str | None:
        now = time.monotonic()
        hit = remembered.get(author_id)
        if hit is None or now - hit[0] > ttl:
            hit = (now, lookup(author_id))
            remembered[author_id] = hit
        return hit[1]

    return cached


def _warm_up(context, author_id: str) -> None:
    """One lookup before the server is ready: Feast's first read in a process pays its imports and
    registry load (seconds), which the first question would otherwise wait for."""
    try:
        context(author_id)
    except Exception as error:  # as at request time: the answers go on without the author's context
        log.warning("no author context for %s (%s: %s)", author_id, type(error).__name__, error)


def build_pipeline(args, settings) -> RagPipeline:
    """The pipeline wired to this process's embedder and index and to the other servers."""
    from twinops.features.embedding import open_embedder
    from twinops.features.feast_store import author_context
    from twinops.infra.documents import AuthorRepository
    from twinops.infra.mongo import connect
    from twinops.infra.request_log import RequestLogRepository
    from twinops.serving.clients import ChatClient, RerankerClient
    from twinops.serving.index import LiveIndex

    if not args.llm_url:
        raise ConfigError("the RAG server needs an LLM server: pass --llm_url http://HOST:PORT/openai/v1")
    db = connect(settings)
    authors = [(author.id, author.full_name) for author in AuthorRepository(db).all()]
    reranker = RerankerClient(args.reranker_url, args.reranker_model) if args.reranker_url else None
    index = LiveIndex(settings, refresh_interval=args.index_refresh_seconds)
    index.refresh()
    context = _cached(lambda author_id: author_context(settings, author_id), AUTHOR_CONTEXT_TTL)
    if authors:
        _warm_up(context, authors[0][0])
    return RagPipeline(
        embedder=open_embedder(settings),
        index=index,
        generator=ChatClient(args.llm_url, args.llm_model, timeout=args.llm_timeout),
        reranker=reranker,
        author_context=context,
        authors=authors,
        request_log=RequestLogRepository(db),
    )


def main(argv: Sequence[str] | None = None) -> None:
    from kserve import model_server as kserve_server

    from twinops.serving.server import build_parser, parse_args, serve
    from twinops.settings import get_settings

    parser = build_parser(
        "python -m twinops.serving.rag",
        "Serve the twin with retrieval (twin-rag) over the OpenAI chat API and KServe V1/V2.",
        model_name=RAG_NAME,
    )
    parser.add_argument("--llm_url", default=None, help="The LLM server's OpenAI base URL (…/openai/v1).")
    parser.add_argument("--llm_model", default="twin-llm", help="Model name on the LLM server.")
    parser.add_argument(
        "--llm_timeout",
        type=float,
        default=300.0,
        help="Seconds to wait for the LLM server's answer (a CPU LLM under load is slow).",
    )
    parser.add_argument(
        "--reranker_url", default=None, help="The reranker's OpenAI base URL; unset = rank by cosine."
    )
    parser.add_argument("--reranker_model", default="twin-reranker", help="Model name on the reranker.")
    parser.add_argument("--top_k", type=int, default=4, help="Passages in the prompt.")
    parser.add_argument("--candidates", type=int, default=12, help="Candidates retrieved before reranking.")
    parser.add_argument("--expansions", type=int, default=2, help="Query variants searched.")
    parser.add_argument(
        "--max_tokens", type=int, default=128, help="Answer length when a request sets none (V1/V2)."
    )
    parser.add_argument(
        "--index_refresh_seconds",
        type=float,
        default=30.0,
        help="How often to look for a new index version behind the alias.",
    )
    args = parse_args(parser, argv)
    settings = get_settings()
    model = TwinRAG(
        args.model_name,
        lambda: build_pipeline(args, settings),
        top_k=args.top_k,
        candidates=args.candidates,
        expansions=args.expansions,
        default_max_tokens=args.max_tokens,
        feedback_identity=FeedbackIdentity.from_settings(settings),
    )
    model.load()
    kserve_server.app.include_router(model.feedback_router())
    serve([model], args)


if __name__ == "__main__":
    from twinops.serving.server import run_main

    sys.exit(run_main(main))
