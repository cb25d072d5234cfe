"""The continuous batcher in-process, on the tiny random Llama (same code paths as the real model, fast).

What a server's users rely on: a request that arrives while others generate joins them at the next
step instead of waiting for them to finish; each request keeps its own ``max_tokens`` and stop
strings; greedy answers are the ones ``model.generate`` gives alone; and a client that goes away
neither blocks nor costs the others. Steps are observed through the ``twinops_llm_batch_size``
histogram (requests that got a token from one forward pass), per engine (its model label).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from twinops.serving.engine import GenerationEngine
from twinops.serving.protocol.types import SamplingParams, TextDelta

pytestmark = pytest.mark.slow  # generates with the tiny model

# Long enough that every request of a test reaches an idle engine before its first step.
WINDOW_MS = 200.0


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama: Path):
    from twinops.models.loaders import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    return model, tokenizer


def _engine(tiny_lm, name: str, **options) -> GenerationEngine:
    model, tokenizer = tiny_lm
    return GenerationEngine(model, tokenizer, model_name=name, batch_window_ms=WINDOW_MS, **options)


def _prompt(tiny_lm, text: str) -> list[int]:
    return list(tiny_lm[1](text, add_special_tokens=False)["input_ids"])


def _metric(name: str, model: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"model": model, **labels}) or 0.0


def _steps_with_more_than(model: str, requests: int) -> float:
    """How many forward passes of engine ``model`` gave a token to more than ``requests`` requests."""
    total = _metric("twinops_llm_batch_size_count", model)
    return total - _metric("twinops_llm_batch_size_bucket", model, le=f"{float(requests)}")


def _generate_alone(tiny_lm, prompt: list[int], max_tokens: int) -> list[int]:
    import torch

    model, tokenizer = tiny_lm
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return out[0, len(prompt) :].tolist()


def test_each_request_of_one_batch_stops_at_its_own_max_tokens(tiny_lm) -> None:
    engine = _engine(tiny_lm, "engine-max-tokens")
    prompts = [_prompt(tiny_lm, text) for text in ("Hello there", "A longer prompt about the weather", "Hi")]
    limits = [3, 11, 7]

    async def run() -> list[TextDelta]:
        try:
            return await asyncio.gather(
                *(
                    engine.generate(p, SamplingParams(max_tokens=n))
                    for p, n in zip(prompts, limits, strict=True)
                )
            )
        finally:
            await engine.close()

    answers = asyncio.run(run())

    assert _steps_with_more_than("engine-max-tokens", 2) >= 1  # the three shared forward passes
    for answer, limit, prompt in zip(answers, limits, prompts, strict=True):
        assert answer.finish_reason == "length"
        assert answer.completion_tokens == limit
        assert answer.prompt_tokens == len(prompt)
        # Sharing a batch changes nothing in a greedy answer: it is generate()'s, run alone.
        assert answer.text == tiny_lm[1].decode(
            _generate_alone(tiny_lm, prompt, limit), skip_special_tokens=True
        )
    assert _metric("twinops_llm_tokens_generated_total", "engine-max-tokens") == sum(limits)


def test_stop_strings_cut_the_text_and_leave_batch_mates_alone(tiny_lm) -> None:
    engine = _engine(tiny_lm, "engine-stop")
    prompt = _prompt(tiny_lm, "Tell me a story")
    free = SamplingParams(max_tokens=24)

    async def run() -> tuple[TextDelta, str, TextDelta, TextDelta]:
        try:
            alone = await engine.generate(prompt, free)
            text = alone.text
            # An ASCII piece from inside the answer: it occurs, and not at the very start.
            start = next(
                i for i in range(1, len(text) - 3) if text[i : i + 3].isascii() and text[i : i + 3].strip()
            )
            stop = text[start : start + 3]
            stopped, mate = await asyncio.gather(
                engine.generate(prompt, free.model_copy(update={"stop": (stop, "never-in-this-text")})),
                engine.generate(prompt, free),
            )
            return alone, stop, stopped, mate
        finally:
            await engine.close()

    alone, stop, stopped, mate = asyncio.run(run())

    assert _steps_with_more_than("engine-stop", 1) >= 1  # the stopped request decoded beside its mate
    assert stopped.text == alone.text[: alone.text.find(stop)]
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert mate.text == alone.text  # the row that had no stop string ran to its max_tokens
    assert mate.completion_tokens == free.max_tokens


def test_a_client_that_goes_away_does_not_block_or_cost_the_others(tiny_lm) -> None:
    name = "engine-gone"
    engine = _engine(tiny_lm, name)
    long = SamplingParams(max_tokens=120)
    prompts = [_prompt(tiny_lm, text) for text in ("First question", "Second question", "Third question")]

    async def leaves_after_first_delta(prompt: list[int]) -> str:
        async with contextlib.aclosing(engine.stream(prompt, long)) as deltas:
            async for delta in deltas:
                return delta.text
        return ""

    async def run():
        try:
            # One that leaves before its batch starts: it never takes a row.
            never = asyncio.create_task(engine.generate(prompts[0], long))
            await asyncio.sleep(0)
            never.cancel()
            results = await asyncio.gather(
                leaves_after_first_delta(prompts[0]),
                engine.generate(prompts[1], long),
                engine.generate(prompts[2], long),
                return_exceptions=True,
            )
            # The worker still serves after both departures.
            after = await asyncio.wait_for(engine.generate(prompts[1], SamplingParams(max_tokens=4)), 60)
            return never, results, after
        finally:
            await engine.close()

    never, (first, second, third), after = asyncio.run(run())

    assert never.cancelled()
    assert isinstance(first, str)
    for answer in (second, third):
        assert isinstance(answer, TextDelta)
        assert answer.finish_reason == "length"
        assert answer.completion_tokens == long.max_tokens
    assert after.completion_tokens == 4
    assert _steps_with_more_than(name, 3) == 0  # the one cancelled before its first step took no row
    # The leaver stopped costing tokens long before its max_tokens.
    generated = _metric("twinops_llm_tokens_generated_total", name)
    assert generated < 3 * long.max_tokens + 4


def test_streaming_requests_share_a_batch_and_stream_what_generate_returns(tiny_lm) -> None:
    name = "engine-streams"
    engine = _engine(tiny_lm, name)
    prompts = [_prompt(tiny_lm, text) for text in ("Stream one", "Stream number two, a bit longer")]
    params = SamplingParams(max_tokens=9)

    async def joined(prompt: list[int]) -> tuple[list[str], TextDelta]:
        pieces, last = [], TextDelta()
        async for delta in engine.stream(prompt, params):
            pieces.append(delta.text)
            last = delta
        return pieces, last

    async def run():
        try:
            streamed = await asyncio.gather(*(joined(p) for p in prompts))
            alone = [await engine.generate(p, params) for p in prompts]
            return streamed, alone
        finally:
            await engine.close()

    streamed, alone = asyncio.run(run())

    assert _steps_with_more_than(name, 1) >= 1  # both streams in the same forward passes
    for (pieces, last), whole in zip(streamed, alone, strict=True):
        assert len([p for p in pieces if p]) > 1  # token by token
        assert "".join(pieces) == whole.text
        assert (last.finish_reason, last.completion_tokens) == ("length", params.max_tokens)


def test_a_late_arrival_joins_the_running_batch_instead_of_waiting_for_it(tiny_lm) -> None:
    name = "engine-join"
    engine = _engine(tiny_lm, name)
    long_prompt, short_prompt = _prompt(tiny_lm, "A long answer, please"), _prompt(tiny_lm, "Short one")
    long_limit, short_limit = 200, 6

    async def run() -> tuple[bool, TextDelta, TextDelta, TextDelta]:
        try:
            running = asyncio.create_task(engine.generate(long_prompt, SamplingParams(max_tokens=long_limit)))
            while not _metric("twinops_llm_tokens_generated_total", name):  # the long answer has begun
                await asyncio.sleep(0.002)
            short = await engine.generate(short_prompt, SamplingParams(max_tokens=short_limit))
            still_running = not running.done()
            long = await running
            alone = await engine.generate(short_prompt, SamplingParams(max_tokens=short_limit))
            return still_running, long, short, alone
        finally:
            await engine.close()

    still_running, long, short, alone = asyncio.run(run())

    # The short request was answered while the long one was still generating: it joined, it did not queue.
    assert still_running
    assert long.completion_tokens == long_limit
    assert short.completion_tokens == short_limit
    assert short.text == alone.text  # joining mid-way changes nothing in a greedy answer
    assert _steps_with_more_than(name, 1) >= 1


def test_sampled_requests_share_a_batch_each_with_its_own_temperature(tiny_lm) -> None:
    name = "engine-sampled"
    engine = _engine(tiny_lm, name)
    prompt = _prompt(tiny_lm, "Sample something")
    settings = [SamplingParams(max_tokens=12, temperature=t, top_p=p) for t, p in ((0.3, 1.0), (1.5, 0.8))]

    async def run() -> list[TextDelta]:
        try:
            return await asyncio.gather(*(engine.generate(prompt, params) for params in settings))
        finally:
            await engine.close()

    answers = asyncio.run(run())

    for answer in answers:
        assert (answer.finish_reason, answer.completion_tokens) == ("length", 12)
    assert _steps_with_more_than(name, 1) >= 1
    # The random tiny model's distribution is nearly flat: greedy text is not what sampling draws.
    greedy = tiny_lm[1].decode(_generate_alone(tiny_lm, prompt, 12), skip_special_tokens=True)
    assert answers[1].text != greedy


def test_a_failing_forward_pass_fails_its_requests_and_the_next_ones_are_served(tiny_lm) -> None:
    name = "engine-recovers"
    engine = _engine(tiny_lm, name)
    model = tiny_lm[0]
    prompt = _prompt(tiny_lm, "Fail once")
    params = SamplingParams(max_tokens=5)

    def broken_forward(*args, **kwargs):
        raise RuntimeError("simulated kernel failure")

    async def run():
        try:
            model.forward = broken_forward  # instance attribute: nn.Module.__call__ finds it first
            try:
                failed = await asyncio.wait_for(
                    asyncio.gather(engine.generate(prompt, params), return_exceptions=True), 60
                )
            finally:
                del model.forward
            served = await asyncio.wait_for(engine.generate(prompt, params), 60)
            return failed[0], served
        finally:
            await engine.close()

    failed, served = asyncio.run(run())

    assert isinstance(failed, Exception)
    assert "simulated kernel failure" in str(failed)
    assert (served.finish_reason, served.completion_tokens) == ("length", 5)


def test_a_request_still_waiting_at_shutdown_fails_instead_of_hanging(tiny_lm) -> None:
    engine = _engine(tiny_lm, "engine-shutdown")

    async def run():
        waiting = asyncio.create_task(
            engine.generate(_prompt(tiny_lm, "Too late"), SamplingParams(max_tokens=4))
        )
        await asyncio.sleep(0)  # it is queued for the idle engine's window
        await engine.close()
        return await asyncio.wait_for(asyncio.gather(waiting, return_exceptions=True), 10)

    (outcome,) = asyncio.run(run())

    assert "shutting down" in str(outcome)
