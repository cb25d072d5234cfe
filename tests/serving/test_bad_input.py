"""Bad input to the model servers: a 4xx in the protocol's own error shape, and the server keeps serving.

OpenAI routes answer ``{"error": {"message", "type", "param", "code"}}`` (an unknown path or method
under ``/openai/`` too), KServe's V1/V2 routes ``{"error": "..."}`` (a binary V2 request whose JSON
header is not one too), gRPC an INVALID_ARGUMENT status; every message names what is wrong. Good and
bad requests sent together: no good one fails and nothing answers 5xx. A runtime started with a
flag it cannot honour exits 2 with one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferInput, InferRequest
from kserve.inference_client import InferenceGRPCClient
from tests.serving.conftest import LLM_MAX_TOKENS_LIMIT, grpc_address
from tests.support.one_line import assert_one_line_exit_2

from twinops.serving.local import LocalServer

pytestmark = pytest.mark.slow

# SmolLM2-135M reads 8192 tokens; this is well over 9000 of them.
TOO_LONG = "hello " * 9500
CONTEXT = "8192"
# Within the context, over the server's default KV cache (4096 tokens per sampling mode).
OVER_KV_CACHE = "hello " * 5000
KV_CACHE = "4096"
USER = [{"role": "user", "content": "Say hi."}]

LLM, EMBEDDER, RERANKER = "llm_server", "embedder_server", "reranker_server"

# (server, path under /openai/v1, body (raw str = sent as is), status, words the message must contain)
OPENAI_CASES = {
    "malformed-json": (LLM, "/chat/completions", '{"model": "twin-llm", "messages": [', 400, ["JSON"]),
    "body-not-object": (LLM, "/chat/completions", "[1, 2]", 400, ["JSON object"]),
    "missing-messages": (LLM, "/chat/completions", {"model": "twin-llm"}, 400, ["messages"]),
    "missing-model": (LLM, "/chat/completions", {"messages": USER}, 400, ["model"]),
    "messages-not-a-list": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": "hi"},
        400,
        ["messages"],
    ),
    "unknown-role": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": [{"role": "wizard", "content": "hi"}]},
        400,
        ["role"],
    ),
    "max-tokens-over-limit": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": USER, "max_tokens": 1000},
        400,
        ["max_tokens", str(LLM_MAX_TOKENS_LIMIT)],
    ),
    "max-tokens-over-limit-streaming": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": USER, "max_tokens": 1000, "stream": True},
        400,
        ["max_tokens", str(LLM_MAX_TOKENS_LIMIT)],
    ),
    "max-tokens-zero": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": USER, "max_tokens": 0},
        400,
        ["max_tokens"],
    ),
    "prompt-over-context": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": [{"role": "user", "content": TOO_LONG}], "max_tokens": 8},
        400,
        ["context", CONTEXT],
    ),
    "completion-prompt-over-context": (
        LLM,
        "/completions",
        {"model": "twin-llm", "prompt": TOO_LONG, "max_tokens": 8},
        400,
        ["context", CONTEXT],
    ),
    "prompt-over-kv-cache": (
        LLM,
        "/completions",
        {"model": "twin-llm", "prompt": OVER_KV_CACHE, "max_tokens": 8},
        400,
        ["KV cache", KV_CACHE, "--kv_cache_tokens"],
    ),
    "unknown-model": (
        LLM,
        "/chat/completions",
        {"model": "gpt-9", "messages": USER},
        404,
        ["gpt-9", "twin-llm"],
    ),
    "n-two": (LLM, "/chat/completions", {"model": "twin-llm", "messages": USER, "n": 2}, 400, ["n"]),
    "temperature-out-of-range": (
        LLM,
        "/chat/completions",
        {"model": "twin-llm", "messages": USER, "temperature": 7},
        400,
        ["temperature"],
    ),
    "completion-empty-prompt": (LLM, "/completions", {"model": "twin-llm", "prompt": ""}, 400, ["empty"]),
    "two-prompts": (LLM, "/completions", {"model": "twin-llm", "prompt": ["a", "b"]}, 400, ["one prompt"]),
    "rerank-on-the-llm": (
        LLM,
        "/rerank",
        {"model": "twin-llm", "query": "q", "documents": ["d"]},
        400,
        ["twin-llm", "rerank"],
    ),
    "embeddings-empty-input": (
        EMBEDDER,
        "/embeddings",
        {"model": "twin-embedder", "input": []},
        400,
        ["input", "empty"],
    ),
    "embeddings-unknown-model": (EMBEDDER, "/embeddings", {"model": "nope", "input": "a"}, 404, ["nope"]),
    "embeddings-bad-encoding": (
        EMBEDDER,
        "/embeddings",
        {"model": "twin-embedder", "input": "a", "encoding_format": "int8"},
        400,
        ["encoding_format"],
    ),
    "rerank-empty-documents": (
        RERANKER,
        "/rerank",
        {"model": "twin-reranker", "query": "q", "documents": []},
        400,
        ["documents"],
    ),
    "rerank-missing-query": (
        RERANKER,
        "/rerank",
        {"model": "twin-reranker", "documents": ["d"]},
        400,
        ["query"],
    ),
    "rerank-top-n-zero": (
        RERANKER,
        "/rerank",
        {"model": "twin-reranker", "query": "q", "documents": ["d"], "top_n": 0},
        400,
        ["top_n"],
    ),
}

# The ``param`` of OpenAI's error names the request field to fix.
OPENAI_PARAMS = {
    "missing-messages": "messages",
    "max-tokens-over-limit": "max_tokens",
    "prompt-over-context": "messages",
    "completion-prompt-over-context": "prompt",
    "prompt-over-kv-cache": "prompt",
    "completion-empty-prompt": "prompt",
    "unknown-model": "model",
    "n-two": "n",
    "embeddings-empty-input": "input",
    "rerank-empty-documents": "documents",
}


@dataclass(frozen=True)
class Binary:
    """A V2 binary request: a JSON header of ``inference-header-content-length`` bytes, then tensors."""

    header: bytes
    length: str | None = None  # default: the header's own length

    def headers(self) -> dict[str, str]:
        length = self.length if self.length is not None else str(len(self.header))
        return {"content-type": "application/octet-stream", "inference-header-content-length": length}


def _v2_body(
    name: str = "text_input", datatype: str = "BYTES", shape=(1,), data=("Say hi.",), **extra
) -> dict:
    return {
        "inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": list(data)}],
        **extra,
    }


# (server, path under the server's URL ({model} is its name), body, status, words in the message)
KSERVE_CASES = {
    "v2-malformed-json": (LLM, "/v2/models/{model}/infer", '{"inputs": [', 400, ["JSON"]),
    "v2-missing-inputs": (LLM, "/v2/models/{model}/infer", {"id": "1"}, 400, ["inputs"]),
    "v2-missing-shape": (
        LLM,
        "/v2/models/{model}/infer",
        {"inputs": [{"name": "text_input", "datatype": "BYTES", "data": ["a"]}]},
        400,
        ["shape"],
    ),
    "v2-wrong-tensor-name": (
        LLM,
        "/v2/models/{model}/infer",
        _v2_body(name="prompt"),
        400,
        ["prompt", "text_input"],
    ),
    "v2-wrong-datatype": (
        LLM,
        "/v2/models/{model}/infer",
        _v2_body(datatype="FP32", data=[1.0]),
        400,
        ["text_input", "FP32", "BYTES"],
    ),
    "v2-wrong-shape": (
        LLM,
        "/v2/models/{model}/infer",
        _v2_body(shape=(1, 1)),
        400,
        ["text_input", "shape"],
    ),
    "v2-data-not-matching-shape": (LLM, "/v2/models/{model}/infer", _v2_body(shape=(3,)), 400, ["shape"]),
    "v2-max-tokens-over-limit": (
        LLM,
        "/v2/models/{model}/infer",
        _v2_body(parameters={"max_tokens": 1000}),
        400,
        ["max_tokens", str(LLM_MAX_TOKENS_LIMIT)],
    ),
    "v2-bad-max-tokens": (
        LLM,
        "/v2/models/{model}/infer",
        _v2_body(parameters={"max_tokens": "many"}),
        400,
        ["max_tokens"],
    ),
    "v2-prompt-over-context": (
        LLM,
        "/v2/models/{model}/infer",
        _v2_body(data=[TOO_LONG], parameters={"max_tokens": 4}),
        400,
        ["context", CONTEXT],
    ),
    "v2-unknown-model": (LLM, "/v2/models/nope/infer", _v2_body(), 404, ["nope"]),
    "v2-binary-missing-inputs": (LLM, "/v2/models/{model}/infer", Binary(b'{"id": "1"}'), 400, ["'inputs'"]),
    "v2-binary-input-without-shape": (
        LLM,
        "/v2/models/{model}/infer",
        Binary(json.dumps({"inputs": [{"name": "text_input", "datatype": "BYTES"}]}).encode()),
        400,
        ["'shape'"],
    ),
    "v2-binary-header-not-an-object": (LLM, "/v2/models/{model}/infer", Binary(b"[1]"), 400, ["JSON header"]),
    "v2-binary-length-not-a-number": (
        LLM,
        "/v2/models/{model}/infer",
        Binary(b'{"id": "1"}', length="abc"),
        400,
        ["inference-header-content-length", "'abc'"],
    ),
    "v2-binary-length-past-the-body": (
        LLM,
        "/v2/models/{model}/infer",
        Binary(b'{"id": "1"}', length="999"),
        400,
        ["'999'", "11 bytes"],
    ),
    "v1-malformed-json": (LLM, "/v1/models/{model}:predict", '{"instances": [', 400, ["request format"]),
    "v1-missing-instances": (LLM, "/v1/models/{model}:predict", {"prompts": ["a"]}, 400, ["instances"]),
    "v1-empty-instances": (LLM, "/v1/models/{model}:predict", {"instances": []}, 400, ["instances", "empty"]),
    "v1-bad-instance": (LLM, "/v1/models/{model}:predict", {"instances": [42]}, 400, ["prompt"]),
    "v1-max-tokens-over-limit": (
        LLM,
        "/v1/models/{model}:predict",
        {"instances": [{"prompt": "a", "max_tokens": 1000}]},
        400,
        ["max_tokens", str(LLM_MAX_TOKENS_LIMIT)],
    ),
    "v1-unknown-model": (LLM, "/v1/models/nope:predict", {"instances": ["a"]}, 404, ["nope"]),
    "v2-embedder-wrong-datatype": (
        EMBEDDER,
        "/v2/models/{model}/infer",
        _v2_body(name="text", datatype="INT32", data=[1]),
        400,
        ["text", "BYTES"],
    ),
    "v2-reranker-empty-documents": (
        RERANKER,
        "/v2/models/{model}/infer",
        {
            "inputs": [
                {"name": "query", "datatype": "BYTES", "shape": [1], "data": ["q"]},
                {"name": "documents", "datatype": "BYTES", "shape": [0], "data": []},
            ]
        },
        400,
        ["documents", "empty"],
    ),
    "v2-reranker-missing-query": (
        RERANKER,
        "/v2/models/{model}/infer",
        {"inputs": [{"name": "documents", "datatype": "BYTES", "shape": [1], "data": ["d"]}]},
        400,
        ["query", "missing"],
    ),
    "v1-reranker-bad-instance": (
        RERANKER,
        "/v1/models/{model}:predict",
        {"instances": ["just text"]},
        400,
        ["query"],
    ),
}


def _post(client: httpx.Client | httpx.AsyncClient, url: str, body):
    if isinstance(body, Binary):
        return client.post(url, content=body.header, headers=body.headers())
    if isinstance(body, str):
        return client.post(url, content=body.encode(), headers={"content-type": "application/json"})
    return client.post(url, json=body)


def assert_openai_error(reply: httpx.Response, status: int, words: list[str]) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] in {"invalid_request_error", "not_found_error"}
    for word in words:
        assert word in error["message"], f"{word!r} not in {error['message']!r}"


def assert_kserve_error(reply: httpx.Response, status: int, words: list[str]) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    for word in words:
        assert word in body["error"], f"{word!r} not in {body['error']!r}"


@pytest.mark.parametrize("case", list(OPENAI_CASES))
def test_openai_bad_input_is_a_4xx_in_openais_shape(case: str, request: pytest.FixtureRequest) -> None:
    role, path, body, status, words = OPENAI_CASES[case]
    server: LocalServer = request.getfixturevalue(role)
    with httpx.Client(timeout=60) as client:
        reply = _post(client, f"{server.openai_url}{path}", body)
    assert reply.headers["content-type"].startswith("application/json")  # an error, not a stream
    assert_openai_error(reply, status, words)
    if case in OPENAI_PARAMS:
        assert reply.json()["error"]["param"] == OPENAI_PARAMS[case]


@pytest.mark.parametrize("case", list(KSERVE_CASES))
def test_kserve_bad_input_is_a_4xx_in_kserves_shape(case: str, request: pytest.FixtureRequest) -> None:
    role, path, body, status, words = KSERVE_CASES[case]
    server: LocalServer = request.getfixturevalue(role)
    with httpx.Client(timeout=60) as client:
        reply = _post(client, server.url + path.format(model=server.model_name), body)
    assert_kserve_error(reply, status, words)


# (method, path, status, words in the message, the Allow header of a 405)
UNKNOWN_OPENAI_ROUTES = {
    "unknown-path": ("GET", "/openai/v1/nope", 404, ["/openai/v1/nope", "/openai/v1/chat/completions"], None),
    "unknown-version": ("POST", "/openai/v2/chat/completions", 404, ["/openai/v2/chat/completions"], None),
    "openai-root": ("GET", "/openai", 404, ["/openai/v1/models"], None),
    "get-on-a-post-route": ("GET", "/openai/v1/chat/completions", 405, ["GET", "POST"], "POST"),
    "delete-a-model": ("DELETE", "/openai/v1/models/twin-llm", 405, ["DELETE", "GET"], "GET"),
}


@pytest.mark.parametrize("case", list(UNKNOWN_OPENAI_ROUTES))
def test_unknown_openai_routes_answer_in_openais_shape(case: str, llm_server: LocalServer) -> None:
    method, path, status, words, allow = UNKNOWN_OPENAI_ROUTES[case]
    with httpx.Client(timeout=60) as client:
        reply = client.request(method, llm_server.url + path)
    assert_openai_error(reply, status, words)
    assert reply.headers.get("allow") == allow


def test_unknown_kserve_routes_keep_fastapis_shape(llm_server: LocalServer) -> None:
    """Only ``/openai/`` is the project's: an unknown V1/V2 path stays FastAPI's own 404."""
    with httpx.Client(timeout=60) as client:
        for path in ("/v2/nope", "/v1/nope", "/openaiv1/models"):
            reply = client.get(llm_server.url + path)
            assert (reply.status_code, reply.json()) == (404, {"detail": "Not Found"}), path


def test_grpc_bad_input_is_invalid_argument(llm_server: LocalServer) -> None:
    def request(name: str, datatype: str, data) -> InferRequest:
        infer_input = InferInput(name, [len(data)], datatype)
        infer_input.set_data_from_numpy(
            np.array(data, dtype=np.object_ if datatype == "BYTES" else np.float32)
        )
        return InferRequest(model_name=llm_server.model_name, infer_inputs=[infer_input])

    async def statuses() -> list[tuple[grpc.StatusCode, str]]:
        found = []
        async with InferenceGRPCClient(grpc_address(llm_server), timeout=60, retries=0) as client:
            for bad in (
                request("prompt", "BYTES", [b"hi"]),
                request("text_input", "FP32", [1.0]),
                InferRequest(
                    model_name=llm_server.model_name,
                    infer_inputs=request("text_input", "BYTES", [b"hi"]).inputs,
                    parameters={"max_tokens": 1000},
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await client.infer(bad)
                found.append((error.value.code(), error.value.details()))
        return found

    (name, datatype, limit) = asyncio.run(statuses())
    assert name[0] == datatype[0] == limit[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt" in name[1] and "text_input" in name[1]
    assert "FP32" in datatype[1] and "BYTES" in datatype[1]
    assert "max_tokens" in limit[1]


def test_good_and_bad_requests_together(llm_server: LocalServer, embedder_server: LocalServer) -> None:
    """Twelve requests at once on loopback: the good ones answer as usual, none answers 5xx."""
    good_chat = {"model": "twin-llm", "messages": USER, "max_tokens": 4, "temperature": 0}
    good = [
        *[(llm_server.openai_url + "/chat/completions", good_chat)] * 4,
        *[(embedder_server.openai_url + "/embeddings", {"model": "twin-embedder", "input": ["a", "b"]})] * 2,
    ]
    bad = [
        (llm_server.openai_url + "/chat/completions", OPENAI_CASES["malformed-json"][2]),
        (llm_server.openai_url + "/chat/completions", OPENAI_CASES["max-tokens-over-limit"][2]),
        (llm_server.openai_url + "/chat/completions", OPENAI_CASES["prompt-over-context"][2]),
        (llm_server.url + "/v2/models/twin-llm/infer", KSERVE_CASES["v2-wrong-tensor-name"][2]),
        (llm_server.url + "/v2/models/twin-llm/infer", KSERVE_CASES["v2-wrong-shape"][2]),
        (embedder_server.openai_url + "/embeddings", OPENAI_CASES["embeddings-empty-input"][2]),
    ]
    # Interleaved, so bad requests arrive while good ones wait in the batch queue.
    mixed = [item for pair in zip(good, bad, strict=True) for item in pair]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(_post(client, url, body) for url, body in mixed))

    replies = asyncio.run(send_all())

    assert [r.status_code for r in replies if r.status_code >= 500] == []
    good_replies, bad_replies = replies[0::2], replies[1::2]
    assert [r.status_code for r in good_replies] == [200] * len(good)
    assert all(400 <= r.status_code < 500 for r in bad_replies)
    chats = [r.json()["choices"][0]["message"]["content"] for r in good_replies if "choices" in r.json()]
    assert len(chats) == 4
    assert len(set(chats)) == 1  # greedy: the same question gets the same answer, bad neighbours or not
    assert chats[0]
    assert httpx.get(f"{llm_server.url}/v2/models/twin-llm/ready", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("runtime", "args", "words"),
    [
        ("llm", ["--workers", "2"], ["--workers 2", "replicas"]),
        ("llm", ["--model_dir", "{missing}"], ["--model_dir"]),
        ("embedder", ["--model_dir", "{empty}"], ["config.json", "--model_dir"]),
        ("llm", ["--model_dir", "{broken}"], ["causal LM", "model_type", "--model_dir"]),
    ],
    ids=["llm-workers", "llm-missing-dir", "embedder-folder-without-model", "llm-folder-not-a-model"],
)
def test_runtime_refuses_bad_flags_in_one_line(
    runtime: str, args: list[str], words: list[str], tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")  # passes the path checks, loads as nothing
    folders = {name: str(tmp_path / name) for name in ("missing", "empty", "broken")}
    command = [sys.executable, "-m", f"twinops.serving.{runtime}", "--host", "127.0.0.1"]
    done = subprocess.run(
        [*command, *(arg.format(**folders) for arg in args)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert_one_line_exit_2(done.returncode, done.stderr, *words)
