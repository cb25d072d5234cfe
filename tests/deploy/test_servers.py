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


# Stand-ins for the Secret's values (the tests play the kubelet, which reads them from the Secret).
_SECRET = {
    "mlflow-admin-username": "twinops-writer",
    "mlflow-admin-password": "writer-password-123",
    "mlflow-reader-username": "twinops-reader",
    "mlflow-reader-password": "reader-password-123",
    "mlflow-flask-secret-key": "0123456789abcdef",
    "redis-password": "redis-password-123",
}


def _secret_env(container: dict) -> dict[str, str]:
    """The container's secretKeyRef variables, as the kubelet would fill them from the Secret."""
    env = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            env[item["name"]] = _SECRET[ref["key"]]
    return env


def _mount_paths(pod: dict, container: dict, tmp_path: Path, docs: list[dict]) -> dict[str, Path]:
    """Each mount as a local folder; a ConfigMap volume's files written into its folder."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    paths = {}
    for mount in container["volumeMounts"]:
        local = tmp_path / mount["name"]
        local.mkdir(exist_ok=True)
        config_map = volumes.get(mount["name"], {}).get("configMap")
        if config_map:
            for name, text in _object(docs, "ConfigMap", config_map["name"])["data"].items():
                (local / name).write_text(text)
        paths[mount["mountPath"]] = local
    return paths


def _localize_files(paths: dict[str, Path]) -> None:
    """Container paths inside mounted config files pointed at the local folders."""
    longest_first = sorted(paths, key=len, reverse=True)
    mounts = re.compile("(?<=//)(" + "|".join(re.escape(mount) for mount in longest_first) + ")(?=/)")
    for local in list(paths.values()):
        for file in local.iterdir():
            if file.is_file():
                file.write_text(mounts.sub(lambda match: str(paths[match[1]]), file.read_text()))


@pytest.mark.slow
def test_mlflow_locks_the_registry_and_answers_in_cluster_clients(renders, tmp_path: Path) -> None:
    """MLflow as the manifest starts it (basic-auth app, the admin from the Secret): an
    unauthenticated registry write is refused, the writers' account (the pipeline's and the
    rollout's) is accepted, and the readers' account that the accounts Job creates may read the
    writers' model but not move its alias. In-cluster Host headers are allowed, others are not."""
    docs = renders.kustomize(OVERLAY)
    namespace = _object(docs, "Deployment", "mlflow")["metadata"]["namespace"]
    pod = _pod(docs, "Deployment", "mlflow")
    container = pod["containers"][0]
    assert container["command"][0] == "mlflow"
    assert "--app-name=basic-auth" in container["args"]
    paths = _mount_paths(pod, container, tmp_path, docs)
    _localize_files(paths)
    port = free_port()
    env = _kubelet_env(container, namespace)
    env = {key: _expand(value, env) for key, value in env.items()}
    env = {key: str(paths.get(value, value)) for key, value in env.items()}  # HOME=/tmp -> the tmp volume
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(
        paths["/etc/mlflow-auth"] / Path(env["MLFLOW_AUTH_CONFIG_PATH"]).name
    )
    env |= _secret_env(container)
    command = _local_command(container, env, paths, {container["ports"][0]["containerPort"]: port})
    command[0] = str(Path(sys.executable).with_name("mlflow"))
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "mlflow.log"
    writer = (_SECRET["mlflow-admin-username"], _SECRET["mlflow-admin-password"])
    reader = (_SECRET["mlflow-reader-username"], _SECRET["mlflow-reader-password"])

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
    create = f"{base}/api/2.0/mlflow/registered-models/create"
    with _started(command, env, tmp_path, log) as process:
        _wait_for(healthy, process, log)
        # The readiness probe, as the kubelet runs it (the admin's credentials from the Secret).
        probe = container["readinessProbe"]["exec"]["command"]
        assert probe[:2] == ["python", "-c"]
        # The kubelet probes again every periodSeconds: the first answer after start may be slow.
        for _ in range(6):
            ran = subprocess.run(
                [sys.executable, "-c", probe[2].replace("127.0.0.1:5000", f"127.0.0.1:{port}")],
                env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=30,
            )  # fmt: skip
            if ran.returncode == 0:
                break
        assert ran.returncode == 0, ran.stderr[-1000:]
        assert "/api/" in probe[2], "the probe exercises the API, not only /health"

        refused = httpx.post(create, json={"name": "intruder"}, headers={"Host": tracking.netloc}, timeout=10)
        assert refused.status_code == 401, refused.text[:200]
        for number, host in enumerate(in_cluster_hosts):
            created = httpx.post(
                f"{base}/api/2.0/mlflow/experiments/create",
                json={"name": f"in-cluster-{number}"},
                headers={"Host": host},
                auth=writer,
                timeout=10,
            )
            assert created.status_code == 200, f"Host {host}: {created.status_code} {created.text[:200]}"
        # Host validation stays on for everything else (DNS rebinding protection).
        foreign = httpx.get(
            f"{base}/api/2.0/mlflow/experiments/search?max_results=1",
            headers={"Host": "attacker.example:5000"}, auth=writer, timeout=10,
        )  # fmt: skip
        assert foreign.status_code == 403

        # The accounts Job, as the manifest runs it: twice (it is applied again after a Secret change).
        job = _pod(docs, "Job", "twinops-mlflow-users")["containers"][0]
        job_env = {**os.environ, **_secret_env(job), "HOME": str(tmp_path)}
        job_env["TWINOPS_MLFLOW_TRACKING_URI"] = base
        for _ in range(2):
            ran = subprocess.run(
                [sys.executable, *job["command"][1:]], env=job_env, capture_output=True, text=True,
                check=False, timeout=120,
            )  # fmt: skip
            assert ran.returncode == 0, ran.stderr[-2000:]
        assert "exists" in ran.stdout, ran.stdout
        registry = f"{base}/api/2.0/mlflow/registered-models"
        model = httpx.get(f"{registry}/get", params={"name": "twin-llm"}, auth=reader, timeout=10)
        assert model.status_code == 200, "readers read the registry"
        version = httpx.post(
            f"{base}/api/2.0/mlflow/model-versions/create",
            json={"name": "twin-llm", "source": "s3://twinops-models/twin-llm/1"}, auth=writer, timeout=10,
        )  # fmt: skip
        assert version.status_code == 200, version.text[:200]
        number = version.json()["model_version"]["version"]
        alias = {"name": "twin-llm", "alias": "champion", "version": number}
        moved_by_reader = httpx.post(f"{registry}/alias", json=alias, auth=reader, timeout=10)
        assert moved_by_reader.status_code == 403, "a reader cannot move champion"
        moved = httpx.post(f"{registry}/alias", json=alias, auth=writer, timeout=10)
        assert moved.status_code == 200, moved.text[:200]
    assert (paths["/mlflow"] / "mlflow.db").exists(), "the backend store is on the data volume"
    assert (paths["/mlflow"] / "basic_auth.db").exists(), "the accounts are on the data volume"


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_redis_requires_its_password_from_pod_addresses(renders, tmp_path: Path) -> None:
    """Redis as the manifest starts it (--requirepass from the Secret, protected mode left on):
    a client on a pod address without the password is refused, the Secret's redis-url is let in,
    and the readiness probe authenticates."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make system-deps`)")
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    import redis

    docs = renders.kustomize(OVERLAY)
    container = _pod(docs, "StatefulSet", "redis")["containers"][0]
    assert "--protected-mode" not in container["args"]
    paths = {mount["mountPath"]: tmp_path / mount["name"] for mount in container["volumeMounts"]}
    for local in paths.values():
        local.mkdir()
    port = free_port()
    env = _secret_env(container)
    command = _local_command(container, env, paths, {container["ports"][0]["containerPort"]: port})
    # The clients' URL, as the README's Secret builds it (redis-url), on this pod's address.
    client_url = f"redis://:{_SECRET['redis-password']}@{address}:{port}/0"

    def answers() -> bool:
        try:
            password = _SECRET["redis-password"]
            return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    log = tmp_path / "redis.log"
    with _started(command, env, tmp_path, log) as process:
        _wait_for(answers, process, log, timeout=30)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=address, port=port, socket_timeout=5).ping()
        client = redis.Redis.from_url(client_url, socket_timeout=5)
        assert client.ping()
        client.set("twinops:feature", "1")
        assert client.get("twinops:feature") == b"1"
        probe = container["readinessProbe"]["exec"]["command"]
        ran = subprocess.run(
            [*probe[:1], "-p", str(port), *probe[1:]],
            env={**os.environ, **env}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ran.stdout.strip() == "PONG", ran.stdout + ran.stderr
    assert list(paths["/data"].glob("appendonly*")), "the append-only file is on the data volume"
