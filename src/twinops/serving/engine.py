"""Continuous batching for causal-LM generation, streaming or not, on transformers' own scheduler.

Every request joins the running batch at the next decoding step: one forward pass carries the
new prompts' prefill beside one token of every running answer, and an answer that ends leaves
its place at once (transformers' ``ContinuousBatchingManager``: packed sequences, a paged KV
cache, prefix sharing). A request that arrives while another is generating therefore waits one
step, not for the whole batch. When the engine is idle, the first arrival waits
``batch_window_ms`` so that requests sent together also prefill together.

Each request gets its own stream of text deltas and ends on its own ``max_tokens``, EOS or stop
string; a client that goes away is cancelled and stops costing tokens. Greedy and sampled
requests run on two schedulers, each with its own KV cache of ``kv_cache_tokens``, allocated at
the mode's first request: sampling is a per-scheduler switch in transformers, and a greedy
request sampled at top-k 1 would pay a vocabulary sort per token. Sampled requests share their
scheduler whatever their temperature and top-p, which apply per request.

With ``adapters`` (a ``MixedAdapterModel``: many twins' LoRA adapters on one base), each request
names the adapter it runs on, fixed when it arrives, and requests of different adapters share the
same steps: each step runs its tokens through their requests' adapters (``routing``). Prefix
sharing of the KV cache is off then: a prompt's keys under one adapter are not its keys under another.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from twinops.serving import metrics
from twinops.serving.adapters import BASE_ADAPTER, MixedAdapterModel
from twinops.serving.protocol.types import SamplingParams, TextDelta

log = logging.getLogger("twinops.serving")
_DONE = object()
# Tokens per page of the paged KV cache: small pages waste little on short answers and let
# requests with a common prompt prefix (the chat template, the RAG instructions) share more.
KV_PAGE_TOKENS = 64


class EngineFailed(RuntimeError):
    """The scheduler failed a request (its background loop died, or the request itself was refused)."""


@dataclass
class _Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    enqueued_at: float = field(default_factory=time.perf_counter)
    token_ids: list[int] = field(default_factory=list)
    tokens_seen: int = 0
    emitted_text: str = ""
    finished: bool = False
    scheduler_done: bool = False
    first_token_at: float | None = None


def _counting_router(observe):
    """transformers' output router, observing how many requests each forward pass gave a token."""
    from transformers.generation.continuous_batching.continuous_api import OutputRouter

    class CountingRouter(OutputRouter):
        def deliver_batch(self, outputs):
            # One call per decoding step, with one output per request that got a token in it.
            observe(len(outputs))
            super().deliver_batch(outputs)

    return CountingRouter()


class GenerationEngine:
    """One model, many concurrent requests, one continuous batch (per sampling mode)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        max_batch_size: int = 8,
        batch_window_ms: float = 10.0,
        kv_cache_tokens: int = 4096,
        max_batch_tokens: int = 512,
        adapters: MixedAdapterModel | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.batch_window = batch_window_ms / 1000
        self.kv_cache_tokens = kv_cache_tokens
        self.max_batch_tokens = max_batch_tokens
        self.eos_ids = self._eos_ids()
        self._managers: dict[bool, Any] = {}  # greedy? -> ContinuousBatchingManager
        self._active: dict[str, _Request] = {}  # submitted and not finished
        self._waiting: list[_Request] = []  # held for the window of an idle engine
        self._flush: asyncio.Handle | None = None
        self._ids = itertools.count()
        self.adapters = adapters
        # request id -> adapter, from arrival until the engine is done with it (the stepping thread reads it).
        self._adapter_of: dict[str, str] = {}

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return set(ids if isinstance(ids, list) else [ids]) - {None}

    # --- the schedulers -----------------------------------------------------------------------
    def _manager(self, greedy: bool):
        manager = self._managers.get(greedy)
        if manager is not None:
            fatal = manager.background_thread_status.fatal_error
            if fatal is None:
                return manager
            # Its requests were failed with the error; the next ones get a fresh loop and cache.
            log.warning("%s: the generation loop stopped on %s; starting a new one", self.model_name, fatal)
            del self._managers[greedy]
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        # The model's own generation settings apply as in generate(), where the scheduler supports them.
        config = copy.deepcopy(self.model.generation_config)
        config.eos_token_id = sorted(self.eos_ids) or -1
        if greedy:
            config.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # Neither may be neutral (1.0): transformers then builds no processor for per-request values.
            config.update(do_sample=True, temperature=0.7, top_p=0.95, top_k=None)
        # With adapters, a step must see the batch it runs (no double buffering), and a prefix's
        # keys are not shared across requests (they differ by adapter).
        mixed = {"allow_block_sharing": False, "use_async_batching": False} if self.adapters else {}
        options = ContinuousBatchingConfig(
            page_size=KV_PAGE_TOKENS,
            num_blocks=math.ceil(self.kv_cache_tokens / KV_PAGE_TOKENS),
            max_batch_tokens=self.max_batch_tokens,
            max_requests_per_batch=self.max_batch_size,
            per_request_processors=not greedy,
            **mixed,
        )
        manager = self.model.init_continuous_batching(
            generation_config=config, continuous_batching_config=options
        )
        manager.output_router = _counting_router(self._observe_batch)
        if self.adapters is not None:
            self._route_steps(manager)
        manager.start()
        self._managers[greedy] = manager
        return manager

    def _route_steps(self, manager: Any) -> None:
        """Every step of ``manager`` runs each scheduled request's tokens through its own adapter."""
        adapters, adapter_of = self.adapters, self._adapter_of
        assert adapters is not None
        step = manager._generation_step

        def routed_step() -> None:
            names: list[str] = []
            for scheduled in manager.batch_processor.inputs_and_outputs.requests_in_batch:
                adapter = adapter_of.get(scheduled.state.request_id, BASE_ADAPTER)
                names.extend([adapter] * scheduled.query_length)
            with adapters.routing(names):
                step()

        manager._generation_step = routed_step

    def adapter_in_use(self, adapter: str) -> bool:
        """Whether a request that has not finished runs on ``adapter``."""
        return adapter in list(self._adapter_of.values())  # a copy: the event loop adds and removes

    def _observe_batch(self, requests: int) -> None:
        metrics.BATCH_SIZE.labels(model=self.model_name).observe(requests)

    # --- submission -------------------------------------------------------------------------
    async def stream(
        self, prompt_ids: list[int], params: SamplingParams, *, adapter: str | None = None
    ) -> AsyncIterator[TextDelta]:
        """Text deltas for one prompt; the last delta has ``finish_reason`` and the token counts.

        ``adapter``: which of ``adapters`` answers (None: the base)."""
        request = _Request(f"{self.model_name}-{next(self._ids)}", list(prompt_ids), params)
        if self.adapters is not None:
            self._adapter_of[request.request_id] = adapter or BASE_ADAPTER
        elif adapter is not None:
            raise EngineFailed(f"{self.model_name} serves no adapters; {adapter!r} was asked for")
        self._waiting.append(request)
        if self._flush is None:
            # An idle engine waits for company; a busy one takes the request at its next step.
            delay = 0.0 if self._active else self.batch_window
            self._flush = asyncio.get_running_loop().call_later(delay, self._submit_waiting)
        try:
            while True:
                item = await request.queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not request.finished:  # the client went away: it stops costing tokens
                self._release(request)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, adapter: str | None = None
    ) -> TextDelta:
        """The whole answer as one delta."""
        pieces: list[str] = []
        last = TextDelta()
        async for delta in self.stream(prompt_ids, params, adapter=adapter):
            pieces.append(delta.text)
            last = delta
        return last.model_copy(update={"text": "".join(pieces)})

    def _submit_waiting(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, []
        for request in waiting:
            if request.finished:
                continue
            try:
                manager = self._manager(request.params.greedy)
                # The handler goes in before the request: a fast answer must not find no one to tell.
                manager.register_result_handler(
                    request.request_id, lambda output, r=request: self._on_output(r, output)
                )
                params = request.params
                sampling = {} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p}
                accepted = manager.add_request(
                    request.prompt_ids,
                    request_id=request.request_id,
                    max_new_tokens=params.max_tokens,
                    streaming=True,
                    **sampling,
                )
                if accepted is None:  # the scheduler is stopping
                    raise EngineFailed("the server is shutting down: retry on another replica")
            except Exception as error:  # this request fails; the others and the server go on
                request.finished = True
                self._adapter_of.pop(request.request_id, None)
                failure = error if isinstance(error, EngineFailed) else EngineFailed(str(error))
                request.queue.put_nowait(failure)
                continue
            self._active[request.request_id] = request

    async def close(self) -> None:
        """Stop the schedulers (pending requests fail)."""
        self.shutdown()

    def shutdown(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        waiting, self._waiting = self._waiting, []
        for request in waiting:  # never submitted: nothing else would ever answer them
            if not request.finished:
                request.finished = True
                self._adapter_of.pop(request.request_id, None)
                request.queue.put_nowait(
                    EngineFailed("the server is shutting down: retry on another replica")
                )
        for manager in self._managers.values():
            manager.stop(block=True, timeout=30, hard_stop=True)
        self._managers.clear()

    # --- outputs (on the event loop) ----------------------------------------------------------
    def _on_output(self, request: _Request, output: Any) -> None:
        if request.finished:
            return
        if output.error is not None:
            self._release(request)
            request.queue.put_nowait(EngineFailed(f"generation failed: {output.error}"))
            return
        request.scheduler_done = output.is_finished()
        now = time.perf_counter()
        new_tokens = output.generated_tokens[request.tokens_seen :]
        request.tokens_seen = len(output.generated_tokens)
        for token in new_tokens:
            if request.first_token_at is None:
                request.first_token_at = now
                metrics.TIME_TO_FIRST_TOKEN.labels(model=self.model_name).observe(now - request.enqueued_at)
            if token in self.eos_ids:
                self._finish(request, "stop")
                return
            request.token_ids.append(token)
            metrics.TOKENS_GENERATED.labels(model=self.model_name).inc()
            text = self.tokenizer.decode(request.token_ids, skip_special_tokens=True)
            stop_at = min((i for i in (text.find(s) for s in request.params.stop) if i >= 0), default=-1)
            if stop_at >= 0:
                self._emit(request, text[:stop_at])
                self._finish(request, "stop")
                return
            # Hold back a trailing replacement char: the next token may complete a UTF-8 sequence.
            if not text.endswith("\ufffd"):
                self._emit(request, text)
            if len(request.token_ids) >= request.params.max_tokens:
                self._finish(request, "length")
                return
        if output.is_finished():  # the scheduler ended it for a reason of its own
            self._finish(request, "length")

    def _emit(self, request: _Request, text: str) -> None:
        if len(text) > len(request.emitted_text) and text.startswith(request.emitted_text):
            request.queue.put_nowait(TextDelta(text=text[len(request.emitted_text) :]))
            request.emitted_text = text

    def _finish(self, request: _Request, reason: str) -> None:
        self._release(request)
        request.queue.put_nowait(
            TextDelta(
                finish_reason=reason,
                prompt_tokens=len(request.prompt_ids),
                completion_tokens=len(request.token_ids),
            )
        )
        request.queue.put_nowait(_DONE)

    def _release(self, request: _Request) -> None:
        """The request is done here; if the scheduler still runs it, it is cancelled."""
        request.finished = True
        # A step already scheduled may still carry it: its tokens then run on the base, and are dropped.
        self._adapter_of.pop(request.request_id, None)
        if self._active.pop(request.request_id, None) is None:
            return
        manager = self._managers.get(request.params.greedy)
        if manager is None or request.scheduler_done:
            return
        manager.cancel_request(request.request_id)
        # A cancelled request gets no last output, so its handler would never be dropped.
        with manager.output_router._lock:
            manager.output_router.result_handlers.pop(request.request_id, None)
