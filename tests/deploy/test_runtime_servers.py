"""The twinops ServingRuntime as the local overlay runs it: the container KServe builds (the runtime's
command and args, {{.Name}} filled in, the InferenceService's command and args merged on), started
here with the ConfigMap's settings, and probed and called the way the kubelet and twin-rag do
(twin-rag calls the ingress gateway with twin-llm's route as the Host). Loads the bundled models: slow."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.services.process import free_port

# Where images/serve caches the bundled models at build time (TWINOPS_HOME=/opt/twinops/bundled).
IMAGE_MODELS = "/opt/twinops/bundled/models"


def _container(renders, name: str):
    docs = renders.kustomize("local")
    workload = next(w for w in renders.workloads(docs) if w.name == name)
    isvc = next(d for d in docs if d["kind"] == "InferenceService" and d["metadata"]["name"] == name)
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == DEFAULT_PROFILE.config_map
    )
    return workload.containers[0], isvc, config["data"]


def _start(container: dict, isvc: dict, settings: dict, models: Path, tmp_path: Path):
    http_port, grpc_port = free_port(), free_port()
    ports = {"--http_port=8080": f"--http_port={http_port}", "--grpc_port=8081": f"--grpc_port={grpc_port}"}
    command = []
    for part in [*container["command"], *container["args"]]:
        part = part.replace("{{.Name}}", isvc["metadata"]["name"])  # noqa: PLW2901 - KServe's templating
        command.append(ports.get(part, part.replace(IMAGE_MODELS, str(models))))
    assert command[:2] == ["python", "-m"]
    command[0] = sys.executable
    env = {
        **os.environ,
        **settings,
        "TWINOPS_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
        "TWINOPS_FEAST_REPO": str(tmp_path / "home" / "feast"),
    }
    log = tmp_path / f"{isvc['metadata']['name']}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    return process, http_port, log


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _probe(container: dict, probe: str, port: int) -> int:
    action = container[probe]["httpGet"]
    assert action["port"] == 8080
    try:
        return httpx.get(f"http://127.0.0.1:{port}{action['path']}", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _ready(process: subprocess.Popen, container: dict, port: int, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {log.read_text()[-3000:]}")
        if _probe(container, "readinessProbe", port) == 200:
            return
        time.sleep(1)
    pytest.fail(f"not ready: {log.read_text()[-3000:]}")


@pytest.mark.slow
def test_twin_llm_as_the_local_overlay_runs_it(renders, bundled_models_dir: Path, tmp_path: Path) -> None:
    container, isvc, settings = _container(renders, "twin-llm")
    process, port, log = _start(container, isvc, settings, bundled_models_dir, tmp_path)
    try:
        _ready(process, container, port, log)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert _probe(container, probe, port) == 200, probe
        rag = next(d for d in renders.kustomize("local") if d["metadata"]["name"] == "twin-rag")
        # twin-rag's flags as the kubelet expands them: $(NAME) from the ConfigMap and the pod's namespace.
        values = {**settings, "POD_NAMESPACE": isvc["metadata"]["namespace"]}
        flags = dict(
            re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: values[m[1]], arg).removeprefix("--").split("=", 1)
            for arg in rag["spec"]["predictor"]["model"]["args"]
        )
        url = urlsplit(flags["llm_url"])._replace(netloc=flags["llm_host"])  # the gateway routes by Host
        messages = [{"role": "user", "content": "What should a team version first in an LLM project?"}]
        answer = httpx.post(
            f"http://127.0.0.1:{port}{url.path}/chat/completions",
            headers={"Host": url.netloc},
            json={"model": "twin-llm", "messages": messages, "max_tokens": 8, "temperature": 0},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text[:300]
        body = answer.json()
        # The container serves the bundled model it was given: its greedy answer is the one the
        # same weights give in-process, token for token, cut at max_tokens.
        expected, expected_tokens = _greedy_answer(bundled_models_dir / "smollm2-135m-instruct", messages, 8)
        assert body["choices"][0]["message"]["content"] == expected
        assert body["usage"]["completion_tokens"] == expected_tokens
        assert body["choices"][0]["finish_reason"] == ("length" if expected_tokens == 8 else "stop")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200
        generated = _sample(metrics.text, "twinops_llm_tokens_generated_total", "twin-llm")
        assert generated == expected_tokens, "the token counter counts what the answer cost"
    finally:
        _stop(process)


def _greedy_answer(model_dir: Path, messages: list[dict], max_tokens: int) -> tuple[str, int]:
    import torch

    from twinops.models.loaders import load_causal_lm

    model, tokenizer = load_causal_lm(str(model_dir))
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        output = model.generate(ids, max_new_tokens=max_tokens, do_sample=False)
    new = output[0, ids.shape[1] :].tolist()
    if new and new[-1] == tokenizer.eos_token_id:
        new = new[:-1]
    return tokenizer.decode(new, skip_special_tokens=True), len(output[0]) - ids.shape[1]


def _sample(exposition: str, name: str, model: str) -> float:
    """One sample of a Prometheus text exposition, by metric name and ``model`` label."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == model:
                return sample.value
    raise AssertionError(f"{name}{{model={model!r}}} is not exposed")


@pytest.mark.slow
def test_twin_reranker_as_the_local_overlay_runs_it(
    renders, bundled_models_dir: Path, tmp_path: Path
) -> None:
    container, isvc, settings = _container(renders, "twin-reranker")
    process, port, log = _start(container, isvc, settings, bundled_models_dir, tmp_path)
    try:
        _ready(process, container, port, log)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert _probe(container, probe, port) == 200, probe
        query = "How do I keep track of every dataset version?"
        documents = [
            "Bake bread at 220 degrees for thirty minutes, with a tray of water below.",
            "Version every dataset: record its hash and lineage so each run can be traced back.",
            "The hiking trail climbs 800 metres through pine forest to the lake.",
        ]
        rerank = f"http://127.0.0.1:{port}/openai/v1/rerank"
        request = {"model": "twin-reranker", "query": query, "documents": documents}
        # The local overlay's MiniLM has an untrained scoring head (see its kustomization), so no
        # order is right yet; what the runtime owes is a ranking of these documents by its scores,
        # the same on every call, cut at top_n, counted, and bad input refused in OpenAI's shape.
        first = httpx.post(rerank, json=request, timeout=60)
        assert first.status_code == 200, first.text[:300]
        results = first.json()["results"]
        assert sorted(r["index"] for r in results) == [0, 1, 2]
        assert [r["document"]["text"] for r in results] == [documents[r["index"]] for r in results]
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        again = httpx.post(rerank, json={**request, "top_n": 2}, timeout=60).json()["results"]
        assert [(r["index"], r["relevance_score"]) for r in again] == [
            (r["index"], r["relevance_score"]) for r in results[:2]
        ]
        refused = httpx.post(rerank, json={**request, "query": " "}, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "query"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert _sample(metrics, "twinops_rerank_pairs_total", "twin-reranker") == 2 * len(documents)
    finally:
        _stop(process)
