"""The servers the manifests start, started here with the manifests' own command and arguments
(container paths and ports mapped to a temporary folder and free ports, `$(VAR)` expanded as the
kubelet expands it, the Secret's keys filled with stand-ins) and called the way in-cluster clients
call them: MLflow with the Host header of the Service names and its accounts, Redis from a
non-loopback address as a pod IP would be, and prod's MLflow on PostgreSQL and an S3 API."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.services.process import free_port

pytestmark = pytest.mark.slow  # real servers (redis, MLflow) as subprocesses

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
    # The clients' URL, as the Secret of docs/cluster.md builds it (redis-url), on this pod's address.
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


_POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
_S3RVER = Path(__file__).resolve().parents[2] / ".tools" / "s3rver" / "node_modules" / ".bin" / "s3rver"


@contextmanager
def _postgresql(folder: Path, port: int) -> Iterator[str]:
    """A PostgreSQL cluster of its own (Debian's, as the postgres user: initdb refuses root) with a
    database and a password user for MLflow; yields its URI, stops and removes it after."""
    if not (_POSTGRES_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 (Debian's postgresql) is not installed")
    shutil.chown(folder, user="postgres")
    data = folder / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"]
    initdb = [str(_POSTGRES_BIN / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", "postgres"]
    subprocess.run([*as_postgres, *initdb, f"--pwfile={_pwfile(folder)}"], check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    pg_ctl = [
        str(_POSTGRES_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "postgres.log"),
    ]
    subprocess.run([*as_postgres, *pg_ctl, "-w", "start"], check=True, capture_output=True)
    try:
        admin = {**os.environ, "PGPASSWORD": "postgres-password"}
        psql = [str(_POSTGRES_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c"]
        subprocess.run([*psql, "CREATE USER mlflow PASSWORD 'mlflow-password'"], env=admin, check=True)
        subprocess.run([*psql, "CREATE DATABASE mlflow OWNER mlflow"], env=admin, check=True)
        yield f"postgresql://mlflow:mlflow-password@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_postgres, str(_POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, check=False)  # fmt: skip


def _pwfile(folder: Path) -> Path:
    path = folder / "superuser-password"
    path.write_text("postgres-password\n")
    shutil.chown(path, user="postgres")
    return path


@pytest.mark.slow
def test_prod_mlflow_keeps_runs_in_postgresql_and_artifacts_on_s3(renders, tmp_path: Path) -> None:
    """prod's MLflow as its manifest starts it, on the PostgreSQL that Debian ships (a cluster of its
    own, on a free port) and an S3 API (s3rver, from npm): a run's metric lands in PostgreSQL, its
    artifact in the bucket, and the registry still refuses an unauthenticated write."""
    if not _S3RVER.exists():
        pytest.skip("s3rver is not fetched: run `make s3rver`")
    docs = renders.kustomize("prod")
    pod = _pod(docs, "Deployment", "mlflow")
    container = pod["containers"][0]
    namespace = _object(docs, "Deployment", "mlflow")["metadata"]["namespace"]
    env_names = {item["name"]: item for item in container["env"]}
    bucket = urlsplit(env_names["MLFLOW_ARTIFACTS_DESTINATION"]["value"])
    assert bucket.scheme == "s3" and not any("sqlite" in arg for arg in container["args"])
    assert {"MLFLOW_BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env_names)

    database_folder = Path(tempfile.mkdtemp(prefix="twinops-pg-"))  # the postgres user must reach it
    s3_port, mlflow_port = free_port(), free_port()
    with _postgresql(database_folder, free_port()) as database_uri:
        (tmp_path / "s3").mkdir()
        s3 = [str(_S3RVER), "-d", str(tmp_path / "s3"), "-a", "127.0.0.1", "-p", str(s3_port),
              "--configure-bucket", bucket.hostname]  # fmt: skip
        with _started(s3, {}, tmp_path, tmp_path / "s3rver.log") as s3rver:
            paths = _mount_paths(pod, container, tmp_path, docs)
            _localize_files(paths)
            env = _kubelet_env(container, namespace)
            env = {key: _expand(value, env) for key, value in env.items()}
            env = {key: str(paths.get(value, value)) for key, value in env.items()}
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(paths["/etc/mlflow-auth"] / "basic_auth.ini")
            secrets = {**_SECRET, "mlflow-backend-store-uri": database_uri,
                       "s3-access-key-id": "S3RVER", "s3-secret-access-key": "S3RVER"}  # fmt: skip
            for item in container["env"]:
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    env[item["name"]] = secrets[ref["key"]]
            env["MLFLOW_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{s3_port}"  # the cluster's S3 API, here
            command = _local_command(container, env, paths, {5000: mlflow_port})
            command[0] = str(Path(sys.executable).with_name("mlflow"))
            base = f"http://127.0.0.1:{mlflow_port}"
            writer = (_SECRET["mlflow-admin-username"], _SECRET["mlflow-admin-password"])

            def healthy() -> bool:
                assert s3rver.poll() is None, (tmp_path / "s3rver.log").read_text()
                try:
                    return httpx.get(f"{base}/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            log = tmp_path / "mlflow.log"
            with _started(command, env, tmp_path, log) as process:
                _wait_for(healthy, process, log)
                refused = httpx.post(
                    f"{base}/api/2.0/mlflow/registered-models/create", json={"name": "x"}, timeout=10
                )
                assert refused.status_code == 401
                script = (
                    "import mlflow, pathlib\n"
                    f"mlflow.set_tracking_uri('{base}')\n"
                    "mlflow.set_experiment('prod-stores')\n"
                    "with mlflow.start_run() as run:\n"
                    "    mlflow.log_metric('golden_perplexity', 12.5)\n"
                    "    pathlib.Path('report.txt').write_text('stored on S3')\n"
                    "    mlflow.log_artifact('report.txt')\n"
                    "print(run.info.run_id)\n"
                )
                client_env = {**os.environ, "MLFLOW_TRACKING_USERNAME": writer[0],
                              "MLFLOW_TRACKING_PASSWORD": writer[1], "HOME": str(tmp_path)}  # fmt: skip
                ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=client_env,
                                     capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
                assert ran.returncode == 0, ran.stderr[-2000:] + log.read_text()[-2000:]
                run_id = ran.stdout.strip().splitlines()[-1]
            psql = [str(_POSTGRES_BIN / "psql"), "-h", "127.0.0.1", "-p", str(urlsplit(database_uri).port)]
            select = f"SELECT value FROM metrics WHERE run_uuid = '{run_id}'"
            as_mlflow = {**os.environ, "PGPASSWORD": "mlflow-password"}
            query = subprocess.run(
                [*psql, "-U", "mlflow", "-d", "mlflow", "-tAc", select],
                env=as_mlflow, capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert query.stdout.strip() == "12.5", "the run's metric is in PostgreSQL"
        stored = list((tmp_path / "s3" / bucket.hostname).rglob("report.txt*"))
        assert stored and run_id in str(stored[0]), "the artifact is in the S3 bucket"
    shutil.rmtree(database_folder, ignore_errors=True)


def test_prods_redis_replica_follows_the_primary_with_the_password(renders, tmp_path: Path) -> None:
    """prod's standby as its manifest starts it: it authenticates to the primary (--masterauth),
    holds what the primary was written, refuses writes, and asks its own clients for the password."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make system-deps`)")
    import redis

    docs = renders.kustomize("prod")
    password = _SECRET["redis-password"]
    started = {}
    for name in ("redis", "redis-replica"):
        container = _pod(docs, "StatefulSet", name)["containers"][0]
        folder = tmp_path / name
        paths = {mount["mountPath"]: folder / mount["name"] for mount in container["volumeMounts"]}
        for local in paths.values():
            local.mkdir(parents=True)
        port = free_port()
        command = _local_command(container, _secret_env(container), paths, {6379: port})
        if "--replicaof" in command:  # the Service `redis` is the primary: here, on its local port
            at = command.index("--replicaof")
            assert container["args"][container["args"].index("--replicaof") + 1] == "redis"
            command[at + 1 : at + 3] = ["127.0.0.1", str(started["redis"][1])]
        started[name] = (command, port, folder)

    def answering(port: int):
        def answers() -> bool:
            try:
                return redis.Redis(port=port, password=password, socket_timeout=1).ping()
            except redis.RedisError:
                return False

        return answers

    (primary_cmd, primary_port, primary_dir), (replica_cmd, replica_port, replica_dir) = started.values()
    with _started(primary_cmd, {}, primary_dir, tmp_path / "primary.log") as primary:
        _wait_for(answering(primary_port), primary, tmp_path / "primary.log", timeout=30)
        redis.Redis(port=primary_port, password=password).set("twinops:feature", "1")
        with _started(replica_cmd, {}, replica_dir, tmp_path / "replica.log") as replica:
            _wait_for(answering(replica_port), replica, tmp_path / "replica.log", timeout=30)
            standby = redis.Redis(port=replica_port, password=password, socket_timeout=5)

            def synced() -> bool:
                return (
                    standby.info("replication")["master_link_status"] == "up"
                    and standby.get("twinops:feature") == b"1"
                )

            _wait_for(synced, replica, tmp_path / "replica.log", timeout=60)
            with pytest.raises(redis.ReadOnlyError):
                standby.set("twinops:feature", "2")
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=replica_port, socket_timeout=5).get("twinops:feature")
