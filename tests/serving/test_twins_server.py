"""One LLM server, many twins: ``python -m twinops.serving.llm --twins all`` on the tiny base, with
random LoRA adapters registered in a real MLflow store as two authors' twins.

What its users rely on: each twin answers by its name (OpenAI and V2) exactly as its adapter alone
would, even when the twins' requests are batched together; an unknown model is a 404 in OpenAI's
shape; when one twin's champion moves, that twin answers as its new adapter without a restart and
the other twin's greedy answers stay byte-identical; a bad adapter is refused and the old keeps
answering.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import greedy_alone, metric, register_twin, scrape, start_server

from twinops.serving.local import LocalServer, LocalServers
from twinops.serving.twins import BASE_NAME

pytestmark = pytest.mark.slow  # a server process and generation

ADA, BO = "twin-llm-ada", "twin-llm-bo"
PROMPT = "Tell me about the sea and the"
ANSWER_TOKENS = 12
SWITCH_TIMEOUT = 120.0  # a busy two-core machine; the benchmark measures the real switch time


def _alone(tiny_llama: Path, adapter_dir: Path | None) -> str:
    return greedy_alone(tiny_llama, adapter_dir, PROMPT, ANSWER_TOKENS)


def _complete(server: LocalServer, model: str) -> str:
    body = {"model": model, "prompt": PROMPT, "max_tokens": ANSWER_TOKENS, "temperature": 0}
    reply = httpx.post(f"{server.openai_url}/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["text"]


def _together(server: LocalServer, models: list[str]) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(len(models)) as pool:
        return list(pool.map(lambda m: _complete(server, m), models))


@pytest.fixture
def twins_server(mlflow_settings, tiny_llama: Path, twin_adapters_dir: Path, tmp_path: Path):
    register_twin(mlflow_settings, ADA, twin_adapters_dir / "seed1", tiny_llama)
    register_twin(mlflow_settings, BO, twin_adapters_dir / "seed2", tiny_llama)
    with LocalServers(mlflow_settings) as servers:
        args = ["--twins", "all", "--model_dir", str(tiny_llama), "--poll_seconds", "0.5"]
        yield start_server(servers, "llm", *args, "--batch_window_ms", "150", model_name=BASE_NAME)


def test_one_server_answers_as_each_twin_and_follows_each_champion(
    twins_server: LocalServer, mlflow_settings, tiny_llama: Path, twin_adapters_dir: Path
) -> None:
    server = twins_server
    listed = httpx.get(f"{server.openai_url}/models", timeout=30).json()
    assert sorted(m["id"] for m in listed["data"]) == sorted([BASE_NAME, ADA, BO])

    unknown = httpx.post(
        f"{server.openai_url}/chat/completions",
        json={"model": "twin-llm-nobody", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert unknown.status_code == 404
    assert "twin-llm-nobody" in unknown.json()["error"]["message"]

    expected = {
        ADA: _alone(tiny_llama, twin_adapters_dir / "seed1"),
        BO: _alone(tiny_llama, twin_adapters_dir / "seed2"),
        BASE_NAME: _alone(tiny_llama, None),
    }
    assert len(set(expected.values())) == 3
    order = [ADA, BO, BASE_NAME, BO, ADA, BASE_NAME]
    assert _together(server, order) == [expected[m] for m in order]  # one batch, three adapters

    # V2 by model name: the twin's answer to a single user turn, as its OpenAI chat gives it.
    question = [{"role": "user", "content": PROMPT}]
    chat = httpx.post(
        f"{server.openai_url}/chat/completions",
        json={"model": ADA, "messages": question, "max_tokens": ANSWER_TOKENS, "temperature": 0},
        timeout=60,
    ).json()["choices"][0]["message"]["content"]
    v2 = httpx.post(
        f"{server.url}/v2/models/{ADA}/infer",
        json={
            "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [PROMPT]}],
            "parameters": {"max_tokens": ANSWER_TOKENS},
        },
        timeout=60,
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [chat]

    # bo's champion moves: bo answers as its new adapter, with no restart; ada is unchanged.
    ada_before = _complete(server, ADA)
    moved_to = register_twin(mlflow_settings, BO, twin_adapters_dir / "seed3", tiny_llama)
    new_bo = _alone(tiny_llama, twin_adapters_dir / "seed3")
    deadline = time.monotonic() + SWITCH_TIMEOUT
    while _complete(server, BO) != new_bo:
        assert time.monotonic() < deadline, "bo never answered as its new champion"
        time.sleep(0.5)
    assert _together(server, [ADA, BO, ADA]) == [ada_before, new_bo, ada_before]
    assert metric(scrape(server), "twinops_llm_adapter_version", model=BO) == float(moved_to)

    # A champion whose adapter was trained on another base: refused, the old one keeps answering.
    foreign = twin_adapters_dir / "other-base-adapter"
    register_twin(mlflow_settings, BO, foreign, twin_adapters_dir / "other-base")
    while metric(scrape(server), "twinops_llm_adapters_refused_total", model=BO) < 1:
        assert time.monotonic() < deadline + SWITCH_TIMEOUT, "the foreign adapter was never refused"
        time.sleep(0.5)
    assert _together(server, [ADA, BO]) == [ada_before, new_bo]
    refusals = [line for line in Path(server.log_file).read_text().splitlines() if "refused" in line]
    assert len(refusals) == 1 and "was trained on" in refusals[0], refusals
