"""The servers the manifests start, started here with the manifests' own command and arguments
(container paths and ports mapped to a temporary folder and free ports, `$(VAR)` expanded as the
kubelet expands it) and called the way in-cluster clients call them: MLflow with the Host header of
the Service names, Redis from a non-loopback address as a pod IP would be."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.services.process import free_port

OVERLAY = "dev"  # its namespace differs from the base's, so expansion of $(POD_NAMESPACE) shows


def _object(docs: list[dict], kind: str, name: str) -> dict:
    return next(doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name)


def _pod(docs: list[dict], kind: str, name: str) -> dict:
    return _object(docs, kind, name)["spec"]["template"]["spec"]


def _kubelet_env(container: dict, namespace: str) -> dict[str, str]:
    """The container's literal env and the namespace field, as the kubelet would set them."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = namespace
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def _local_command(
    container: dict, env: dict[str, str], paths: dict[str, Path], ports: dict[int, int]
) -> list[str]:
    """command + args, expanded, with mount paths and container ports replaced by local ones."""
    mounts = re.compile(
        r"(?<![\w.])(" + "|".join(re.escape(m) for m in sorted(paths, key=len, reverse=True)) + r")(?=/|$)"
    )

    def localize(part: str) -> str:
        expanded = mounts.sub(lambda match: str(paths[match[1]]), _expand(part, env))
        for container_port, local_port in ports.items():
            expanded = re.sub(rf"(^|[=:]){container_port}$", rf"\g<1>{local_port}", expanded)
        return expanded

    return [localize(part) for part in [*container.get("command", []), *container.get("args", [])]]


@contextmanager
def _started(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(check, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {log.read_text()[-2000:]}")
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"the server did not come up: {log.read_text()[-2000:]}")


def test_mlflow_answers_in_cluster_clients(renders, tmp_path: Path) -> None:
    docs = renders.kustomize(OVERLAY)
    namespace = _object(docs, "Deployment", "mlflow")["metadata"]["namespace"]
    pod = _pod(docs, "Deployment", "mlflow")
    container = pod["containers"][0]
    assert container["command"][0] == "mlflow"
    paths = {mount["mountPath"]: tmp_path / mount["name"] for mount in container["volumeMounts"]}
    for local in paths.values():
        local.mkdir()
    port = free_port()
    env = _kubelet_env(container, namespace)
    env = {key: _expand(value, env) for key, value in env.items()}
    env = {key: str(paths.get(value, value)) for key, value in env.items()}  # HOME=/tmp -> the tmp volume
    command = _local_command(container, env, paths, {container["ports"][0]["containerPort"]: port})
    command[0] = str(Path(sys.executable).with_name("mlflow"))
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "mlflow.log"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    tracking = urlsplit(
        _object(docs, "ConfigMap", DEFAULT_PROFILE.config_map)["data"]["TWINOPS_MLFLOW_TRACKING_URI"]
    )
    in_cluster_hosts = [
        tracking.netloc,  # what every twinops pod sends: mlflow:5000
        f"{tracking.hostname}.{namespace}:{tracking.port}",
        f"{tracking.hostname}.{namespace}.svc.cluster.local:{tracking.port}",
    ]
    with _started(command, env, tmp_path, log) as process:
        _wait_for(healthy, process, log)
        # The readiness probe, as the kubelet sends it.
        probe = container["readinessProbe"]["httpGet"]
        headers = {header["name"]: header["value"] for header in probe.get("httpHeaders", [])}
        assert probe["path"].startswith("/api/"), "the probe exercises the API, not only /health"
        assert httpx.get(f"{base}{probe['path']}", headers=headers, timeout=10).status_code == 200
        for number, host in enumerate(in_cluster_hosts):
            created = httpx.post(
                f"{base}/api/2.0/mlflow/experiments/create",
                json={"name": f"in-cluster-{number}"},
                headers={"Host": host},
                timeout=10,
            )
            assert created.status_code == 200, f"Host {host}: {created.status_code} {created.text[:200]}"
            found = httpx.get(
                f"{base}/api/2.0/mlflow/experiments/get-by-name",
                params={"experiment_name": f"in-cluster-{number}"},
                headers={"Host": host},
                timeout=10,
            )
            assert found.status_code == 200 and found.json()["experiment"]["name"] == f"in-cluster-{number}"
        # Host validation stays on for everything else (DNS rebinding protection).
        foreign = httpx.get(f"{base}{probe['path']}", headers={"Host": "attacker.example:5000"}, timeout=10)
        assert foreign.status_code == 403
    assert (paths["/mlflow"] / "mlflow.db").exists(), "the backend store is on the data volume"


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_redis_answers_clients_on_pod_addresses(renders, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make system-deps`)")
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    import redis

    docs = renders.kustomize(OVERLAY)
    container = _pod(docs, "StatefulSet", "redis")["containers"][0]
    paths = {mount["mountPath"]: tmp_path / mount["name"] for mount in container["volumeMounts"]}
    for local in paths.values():
        local.mkdir()
    port = free_port()
    command = _local_command(container, {}, paths, {container["ports"][0]["containerPort"]: port})
    url = urlsplit(_object(docs, "ConfigMap", DEFAULT_PROFILE.config_map)["data"]["TWINOPS_REDIS_URL"])
    client_url = url._replace(netloc=f"{address}:{port}").geturl()

    def answers() -> bool:
        try:
            return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    log = tmp_path / "redis.log"
    with _started(command, {}, tmp_path, log) as process:
        _wait_for(answers, process, log, timeout=30)
        client = redis.Redis.from_url(client_url, socket_timeout=5)
        assert client.ping()
        client.set("twinops:feature", "1")
        assert client.get("twinops:feature") == b"1"
        probe = container["readinessProbe"]["exec"]["command"]
        ran = subprocess.run(
            [*probe[:1], "-p", str(port), *probe[1:]], capture_output=True, text=True, check=False
        )
        assert ran.stdout.strip() == "PONG"
    assert list(paths["/data"].glob("appendonly*")), "the append-only file is on the data volume"

    # Without the manifest's --protected-mode no, a password-less Redis refuses pod-IP clients.
    guarded = [part for part in command if part not in {"--protected-mode", "no"}]
    guarded_log = tmp_path / "guarded.log"
    with _started(guarded, {}, tmp_path, guarded_log) as process:
        _wait_for(answers, process, guarded_log, timeout=30)
        with socket.create_connection((address, port), timeout=5) as connection:
            connection.sendall(b"PING\r\n")
            assert connection.recv(200).startswith(b"-DENIED")
