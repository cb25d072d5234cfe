"""The LLM server (SmolLM2-135M) through the clients its users have.

The property users rely on: a greedy answer from the server, over any protocol, is the text that
the tokenizer's chat template and a greedy ``model.generate`` give in-process for the same prompt
and ``max_tokens``, alone or batched with other requests. Clients: the ``openai`` SDK (chat,
streaming, completions, models), kserve's ``InferenceRESTClient`` and ``InferenceGRPCClient`` (V2),
plain HTTP for V1 and for the raw SSE stream. ``/metrics`` is read before and after a request.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path

import httpx
import numpy as np
import pytest
from kserve import InferInput, InferRequest
from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from tests.serving.conftest import grpc_address, metric, scrape

from twinops.serving.local import LocalServer

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"
QUESTION_TOKENS = 12
PROMPT = "The three primary colors are"
PROMPT_TOKENS = 8
# Different lengths, so that a batch of them is left-padded.
BATCH_QUESTIONS = [
    "Name a fruit.",
    "What is two plus two?",
    "Give me one word that rhymes with cat.",
    "Which planet is known as the red planet in our solar system?",
    "Say hello.",
    "What colour is the sky on a clear day, and why does it look that way to us?",
]
BATCH_TOKENS = 8


class Reference:
    """Greedy ``generate`` in this process, on the same folder the server loads."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.eos = self.model.generation_config.eos_token_id

    def chat_ids(self, question: str) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(self, ids: list[int], max_tokens: int) -> tuple[str, int, str]:
        """(text, completion tokens, finish reason) of one greedy generation."""
        with self.torch.inference_mode():
            output = self.model.generate(
                self.torch.tensor([ids]),
                attention_mask=self.torch.ones((1, len(ids)), dtype=self.torch.long),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = output[0, len(ids) :].tolist()
        finish = "length"
        if self.eos in new:
            new, finish = new[: new.index(self.eos)], "stop"
        return self.tokenizer.decode(new, skip_special_tokens=True), len(new), finish


@pytest.fixture(scope="module")
def reference(smollm_dir: Path) -> Reference:
    return Reference(smollm_dir)


@pytest.fixture(scope="module")
def answer(reference: Reference):
    """The in-process greedy answer to a chat question, computed once per question."""

    @cache
    def answer_to(question: str, max_tokens: int) -> tuple[str, int, str]:
        return reference.generate(reference.chat_ids(question), max_tokens)

    return answer_to


def _openai(server: LocalServer):
    from openai import OpenAI

    return OpenAI(base_url=server.openai_url, api_key="unused", timeout=300, max_retries=0)


# --- OpenAI -------------------------------------------------------------------------------------
def test_chat_equals_greedy_generate_and_counts_its_tokens(llm_server: LocalServer, answer) -> None:
    expected_text, expected_tokens, expected_finish = answer(QUESTION, QUESTION_TOKENS)
    before = scrape(llm_server)

    reply = _openai(llm_server).chat.completions.create(
        model=llm_server.model_name,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=QUESTION_TOKENS,
        temperature=0,
    )

    after = scrape(llm_server)
    (choice,) = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_text
    assert choice.finish_reason == expected_finish
    assert reply.usage.completion_tokens == expected_tokens
    assert reply.model == llm_server.model_name

    tokens = "twinops_llm_tokens_generated_total"
    assert (
        metric(after, tokens, model="twin-llm") - metric(before, tokens, model="twin-llm") == expected_tokens
    )
    first_token = "twinops_llm_time_to_first_token_seconds_count"
    assert metric(after, first_token, model="twin-llm") == metric(before, first_token, model="twin-llm") + 1
    # Alone on the server, each forward pass gave this one request one token (an ending EOS included).
    steps = expected_tokens + (expected_finish == "stop")
    for series in ("twinops_llm_batch_size_count", "twinops_llm_batch_size_sum"):
        assert metric(after, series, model="twin-llm") - metric(before, series, model="twin-llm") == steps


def test_streamed_chat_joins_to_the_same_text(llm_server: LocalServer, answer) -> None:
    expected_text, _, expected_finish = answer(QUESTION, QUESTION_TOKENS)
    stream = _openai(llm_server).chat.completions.create(
        model=llm_server.model_name,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=QUESTION_TOKENS,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert len(chunks) > 2  # token by token, not one piece
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected_text
    assert chunks[-1].choices[0].finish_reason == expected_finish


def test_raw_sse_stream_ends_with_done(llm_server: LocalServer, answer) -> None:
    expected_text, expected_tokens, _ = answer(QUESTION, QUESTION_TOKENS)
    body = {
        "model": llm_server.model_name,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": QUESTION_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{llm_server.openai_url}/chat/completions", json=body, timeout=300) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]

    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(event["object"] == "chat.completion.chunk" for event in events)
    text = "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])
    assert text == expected_text
    usage = events[-1]["usage"]  # include_usage: a last chunk with no choices and the counts
    assert events[-1]["choices"] == []
    assert usage["completion_tokens"] == expected_tokens


def test_completions_equal_greedy_generate_streamed_or_not(llm_server: LocalServer, reference) -> None:
    expected_text, expected_tokens, expected_finish = reference.generate(
        reference.prompt_ids(PROMPT), PROMPT_TOKENS
    )
    client = _openai(llm_server)
    reply = client.completions.create(
        model=llm_server.model_name, prompt=PROMPT, max_tokens=PROMPT_TOKENS, temperature=0
    )
    assert reply.choices[0].text == expected_text
    assert reply.choices[0].finish_reason == expected_finish
    assert reply.usage.completion_tokens == expected_tokens

    stream = client.completions.create(
        model=llm_server.model_name, prompt=PROMPT, max_tokens=PROMPT_TOKENS, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream if chunk.choices) == expected_text


def test_models_list_and_retrieve(llm_server: LocalServer) -> None:
    client = _openai(llm_server)
    assert [model.id for model in client.models.list()] == [llm_server.model_name]
    card = client.models.retrieve(llm_server.model_name)
    assert (card.id, card.object) == (llm_server.model_name, "model")


# --- KServe V1 and V2 ---------------------------------------------------------------------------
def _text_input() -> InferInput:
    infer_input = InferInput("text_input", [1], "BYTES")
    infer_input.set_data_from_numpy(np.array([QUESTION.encode()], dtype=np.object_), binary_data=False)
    return infer_input


def _v2_request(server: LocalServer) -> InferRequest:
    return InferRequest(
        model_name=server.model_name,
        infer_inputs=[_text_input()],
        parameters={"max_tokens": QUESTION_TOKENS},
    )


def _only_text(reply) -> str:
    (output,) = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("text_output", "BYTES", [1])
    (value,) = output.as_numpy().tolist()
    return value.decode() if isinstance(value, bytes) else value


def test_v2_infer_over_rest(llm_server: LocalServer, answer) -> None:
    async def infer():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=300))
        try:
            return await client.infer(
                llm_server.url, _v2_request(llm_server), model_name=llm_server.model_name
            )
        finally:
            await client.close()

    assert _only_text(asyncio.run(infer())) == answer(QUESTION, QUESTION_TOKENS)[0]


def test_v2_infer_over_grpc(llm_server: LocalServer, answer) -> None:
    async def infer():
        async with InferenceGRPCClient(grpc_address(llm_server), timeout=300) as client:
            return await client.infer(_v2_request(llm_server))

    assert _only_text(asyncio.run(infer())) == answer(QUESTION, QUESTION_TOKENS)[0]


def test_v1_predict(llm_server: LocalServer, answer) -> None:
    reply = httpx.post(
        f"{llm_server.url}/v1/models/{llm_server.model_name}:predict",
        json={"instances": [{"prompt": QUESTION, "max_tokens": QUESTION_TOKENS}]},
        timeout=300,
    )
    assert reply.status_code == 200
    assert reply.json() == {"predictions": [answer(QUESTION, QUESTION_TOKENS)[0]]}


def test_v2_metadata_and_health_over_rest_and_grpc(llm_server: LocalServer) -> None:
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelMetadataRequest

    declared = {
        "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}],
    }
    rest = httpx.get(f"{llm_server.url}/v2/models/{llm_server.model_name}", timeout=30).json()
    assert {"inputs": rest["inputs"], "outputs": rest["outputs"]} == declared

    async def over_grpc():
        async with InferenceGRPCClient(grpc_address(llm_server), timeout=30) as client:
            # The client has no metadata call; its stub is kserve's generated GRPCInferenceService stub.
            reply = await client._client_stub.ModelMetadata(ModelMetadataRequest(name=llm_server.model_name))
            health = (
                await client.is_server_live(),
                await client.is_server_ready(),
                await client.is_model_ready(llm_server.model_name),
            )
        tensors = {
            side: [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in getattr(reply, side)
            ]
            for side in ("inputs", "outputs")
        }
        return tensors, health

    async def over_rest():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            return (
                await client.is_server_live(llm_server.url),
                await client.is_server_ready(llm_server.url),
                await client.is_model_ready(llm_server.url, llm_server.model_name),
            )
        finally:
            await client.close()

    tensors, grpc_health = asyncio.run(over_grpc())
    assert tensors == declared
    assert grpc_health == (True, True, True)
    assert asyncio.run(over_rest()) == (True, True, True)


def test_metrics_expose_llm_and_kserve_series(llm_server: LocalServer) -> None:
    names = {name for name, _labels in scrape(llm_server)}
    for expected in (
        "twinops_llm_tokens_generated_total",
        "twinops_llm_time_to_first_token_seconds_count",
        "twinops_llm_batch_size_count",
        "twinops_llm_batch_size_sum",
        "request_predict_seconds_count",  # kserve's request histograms (V1/V2 predict)
        "request_preprocess_seconds_count",
    ):
        assert expected in names, f"{expected} missing from /metrics"


# --- continuous batching ---------------------------------------------------------------------------
def test_concurrent_requests_share_batches_and_answer_as_alone(llm_server: LocalServer, answer) -> None:
    from openai import AsyncOpenAI

    alone = [answer(question, BATCH_TOKENS)[0] for question in BATCH_QUESTIONS]
    before = scrape(llm_server)

    async def ask_all() -> list[str]:
        client = AsyncOpenAI(base_url=llm_server.openai_url, api_key="unused", timeout=300, max_retries=0)
        try:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=llm_server.model_name,
                        messages=[{"role": "user", "content": question}],
                        max_tokens=BATCH_TOKENS,
                        temperature=0,
                    )
                    for question in BATCH_QUESTIONS
                )
            )
        finally:
            await client.close()
        return [reply.choices[0].message.content for reply in replies]

    together = asyncio.run(ask_all())
    after = scrape(llm_server)

    calls = metric(after, "twinops_llm_batch_size_count", model="twin-llm") - metric(
        before, "twinops_llm_batch_size_count", model="twin-llm"
    )
    rows = metric(after, "twinops_llm_batch_size_sum", model="twin-llm") - metric(
        before, "twinops_llm_batch_size_sum", model="twin-llm"
    )
    tokens = metric(after, "twinops_llm_tokens_generated_total", model="twin-llm") - metric(
        before, "twinops_llm_tokens_generated_total", model="twin-llm"
    )
    assert rows >= tokens  # every token came from a step (an EOS is a step's output, not a token)
    assert calls < rows, "no forward pass served more than one request"
    assert together == alone
