"""Dynamic batching for causal-LM generation, streaming or not.

Requests queue up; a worker takes the first one, waits up to ``batch_window_ms`` for others, and
runs them as one ``model.generate`` call (left padding, so prompts of similar length go together:
when more are waiting than fit, the batch is the ones closest in length to the oldest). Each
request gets its own stream of text deltas: a streamer hands every decoding step's tokens to the
requests' queues, and a stopping criterion ends each row on its own ``max_tokens``, EOS or stop
string, so one long answer does not make the short ones wait for their last token.

Requests with different sampling settings (greedy vs. temperature/top-p) go in different batches:
``generate`` takes one setting per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from twinops.serving import metrics

_DONE = object()


class SamplingParams(BaseModel):
    """What one request asks of the decoder."""

    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def batch_key(self) -> tuple:
        # generate() takes one sampling setting per call: only requests that agree share a batch.
        return ("greedy",) if self.greedy else ("sample", self.temperature, self.top_p, self.seed)


class TextDelta(BaseModel):
    """A piece of one request's answer; the last one carries ``finish_reason`` and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = Field(default_factory=dict, description="Top-level response extensions.")


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop
    enqueued_at: float = field(default_factory=time.perf_counter)
    token_ids: list[int] = field(default_factory=list)
    emitted_text: str = ""
    finished: bool = False
    first_token_at: float | None = None

    def send(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _RowStreamer:
    """Receives each decoding step's new tokens for the whole batch (transformers' streamer API)."""

    def __init__(self, on_step: Callable[[list[int]], None]):
        self.on_step = on_step
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call carries the prompts
            self._prompt_seen = True
            return
        self.on_step([int(token) for token in value.reshape(-1).tolist()])

    def end(self) -> None:
        return None


class GenerationEngine:
    """One model, one worker task, many concurrent requests batched together."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        max_batch_size: int = 8,
        batch_window_ms: float = 10.0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.batch_window = batch_window_ms / 1000
        self._pending: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        # One generate() at a time: the model is not re-entrant and the CPU has no room for two.
        self._lock = threading.Lock()
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return set(ids if isinstance(ids, list) else [ids]) - {None}

    # --- submission -------------------------------------------------------------------------
    async def stream(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TextDelta]:
        """Text deltas for one prompt; the last delta has ``finish_reason`` and the token counts."""
        loop = asyncio.get_running_loop()
        request = _Request(list(prompt_ids), params, asyncio.Queue(), loop)
        self._ensure_worker()
        self._pending.append(request)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            while True:
                item = await request.queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.finished = True  # a client that went away stops costing tokens

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> TextDelta:
        """The whole answer as one delta."""
        pieces: list[str] = []
        last = TextDelta()
        async for delta in self.stream(prompt_ids, params):
            pieces.append(delta.text)
            last = delta
        return last.model_copy(update={"text": "".join(pieces)})

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # --- the worker ---------------------------------------------------------------------------
    def _take_batch(self) -> list[_Request]:
        """The oldest request plus the compatible ones nearest to it in prompt length."""
        self._pending = [r for r in self._pending if not r.finished]
        if not self._pending:
            return []
        first = self._pending[0]
        key = first.params.batch_key()
        compatible = [r for r in self._pending[1:] if r.params.batch_key() == key]
        compatible.sort(key=lambda r: abs(len(r.prompt_ids) - len(first.prompt_ids)))
        batch = [first, *compatible[: self.max_batch_size - 1]]
        taken = {id(r) for r in batch}
        self._pending = [r for r in self._pending if id(r) not in taken]
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            # The window lets requests that arrive together share one forward pass per token.
            if len(self._pending) < self.max_batch_size:
                await asyncio.sleep(self.batch_window)
            batch = self._take_batch()
            if not batch:
                continue
            metrics.BATCH_SIZE.labels(model=self.model_name).observe(len(batch))
            try:
                await loop.run_in_executor(None, self._generate_batch, batch)
            except Exception as error:  # the batch fails, the server keeps serving
                for request in batch:
                    request.send(error)
            for request in batch:
                request.send(_DONE)

    def _generate_batch(self, batch: list[_Request]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = next(iter(self.eos_ids), 0)
        longest = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, request in enumerate(batch):
            n = len(request.prompt_ids)
            input_ids[row, longest - n :] = torch.tensor(request.prompt_ids, dtype=torch.long)
            attention[row, longest - n :] = 1

        engine = self

        class _RowsDone(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.tensor([r.finished for r in batch], dtype=torch.bool)

        params = batch[0].params
        sampling: dict[str, Any] = {"do_sample": False}
        if not params.greedy:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if params.seed is not None:
                torch.manual_seed(params.seed)
        with self._lock, torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max(r.params.max_tokens for r in batch),
                pad_token_id=pad_id,
                streamer=_RowStreamer(lambda tokens: engine._on_step(batch, tokens)),
                stopping_criteria=StoppingCriteriaList([_RowsDone()]),
                **sampling,
            )
        for request in batch:
            if not request.finished:
                self._finish(request, "length")

    def _on_step(self, batch: list[_Request], tokens: list[int]) -> None:
        now = time.perf_counter()
        for request, token in zip(batch, tokens, strict=True):
            if request.finished:
                continue
            if request.first_token_at is None:
                request.first_token_at = now
                metrics.TIME_TO_FIRST_TOKEN.labels(model=self.model_name).observe(now - request.enqueued_at)
            if token in self.eos_ids:
                self._finish(request, "stop")
                continue
            request.token_ids.append(token)
            metrics.TOKENS_GENERATED.labels(model=self.model_name).inc()
            text = self.tokenizer.decode(request.token_ids, skip_special_tokens=True)
            stop_at = min((i for i in (text.find(s) for s in request.params.stop) if i >= 0), default=-1)
            if stop_at >= 0:
                self._emit(request, text[:stop_at])
                self._finish(request, "stop")
                continue
            # Hold back a trailing replacement char: the next token may complete a UTF-8 sequence.
            if not text.endswith("\ufffd"):
                self._emit(request, text)
            if len(request.token_ids) >= request.params.max_tokens:
                self._finish(request, "length")

    def _emit(self, request: _Request, text: str) -> None:
        if len(text) > len(request.emitted_text) and text.startswith(request.emitted_text):
            request.send(TextDelta(text=text[len(request.emitted_text) :]))
            request.emitted_text = text

    def _finish(self, request: _Request, reason: str) -> None:
        request.finished = True
        request.send(
            TextDelta(
                finish_reason=reason,
                prompt_tokens=len(request.prompt_ids),
                completion_tokens=len(request.token_ids),
            )
        )
