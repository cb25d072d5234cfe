"""The twinops ServingRuntime as the local overlay runs it: the container KServe builds (the runtime's
command and args, {{.Name}} filled in, the InferenceService's command and args merged on), started
here with the ConfigMap's settings, and probed and called the way the kubelet and twin-rag do
(twin-rag sends the Host of the `<name>-predictor` Service). Loads the bundled models: slow."""

from __future__ import annotations

import os
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
        llm_url = next(a for a in rag["spec"]["predictor"]["model"]["args"] if a.startswith("--llm_url="))
        url = urlsplit(llm_url.split("=", 1)[1].replace("$(POD_NAMESPACE)", isvc["metadata"]["namespace"]))
        answer = httpx.post(
            f"http://127.0.0.1:{port}{url.path}/chat/completions",
            headers={"Host": url.netloc},
            json={"model": "twin-llm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["choices"][0]["message"]["content"] is not None
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    finally:
        _stop(process)


@pytest.mark.slow
def test_twin_reranker_as_the_local_overlay_runs_it(
    renders, bundled_models_dir: Path, tmp_path: Path
) -> None:
    container, isvc, settings = _container(renders, "twin-reranker")
    process, port, log = _start(container, isvc, settings, bundled_models_dir, tmp_path)
    try:
        _ready(process, container, port, log)
        assert _probe(container, "livenessProbe", port) == 200
    finally:
        _stop(process)
