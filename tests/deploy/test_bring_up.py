"""Bring-up on a fresh cluster: every render comes up by itself, in order, with its doors locked.

- Credentials are required: no ``secretKeyRef`` is optional, and every database starts with
  authentication on (a pod without the Secret does not start; the kubelet names the key).
- Order is explicit: each workload's ``wait-for`` init container waits for what the workload needs
  (the models the ``twinops-models`` Job caches on the volume, the Services it calls), a dependency
  graph of the render is walked for a workload that could start before what it needs, a wait for
  something no object provides, and a cycle (two workloads waiting for each other).
- The wait script itself runs here: it says what it waits for, and returns once all is there.
"""

from __future__ import annotations

import copy
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from twinops.models.bundled import PULLERS
from twinops.models.resolve import BUNDLED_PREFIX
from twinops.pipelines.gpu import DEFAULT_PROFILE

WAIT_CONTAINER = "wait-for"
# What each server needs before it can start, beyond what its arguments name (derived below):
# the stores it opens at start, by the module or command it runs.
_NEEDS_BY_COMMAND = {
    "twinops.serving.rag": {"mongodb:27017", "qdrant:6333", "redis:6379", "embedder"},
    # A release pins models:/twin-llm/<VERSION>, read in the registry at start.
    "twinops.serving.llm": {"mlflow:5000"},
    "twinops.serving.reranker": {"mlflow:5000"},
    "twinops drift serve": {"mongodb:27017", "mlflow:5000", "embedder"},
    "twinops.rollout": {"mongodb:27017", "mlflow:5000"},
    "AuthServiceClient": {"mlflow:5000"},  # the MLflow accounts Job
    "twinops.infra.mongo_replica_set": {"mongodb:27017"},  # prod's replica-set Job
}
# Pods that call nothing at start: the stores themselves and the Job that fills the volume.
_STARTS_FIRST = {"mongodb", "qdrant", "redis", "mlflow", "twinops-models"}


def _containers(docs: list[dict], renders) -> list[tuple[str, dict]]:
    found = [(w.name, c) for w in renders.workloads(docs) for c in [*w.init_containers, *w.containers]]
    found += [
        (d["metadata"]["name"], c)
        for d in docs
        if d["kind"] == "ServingRuntime"
        for c in d["spec"]["containers"]
    ]
    return found


def test_no_credential_is_optional(renders, docs: list[dict]) -> None:
    """A pod that lacks a key of the Secret fails at start naming it, instead of starting without
    authentication (MongoDB) or failing later for lack of a URI."""
    optional = [
        f"{owner}: {env['name']}"
        for owner, container in _containers(docs, renders)
        for env in container.get("env", [])
        if env.get("valueFrom", {}).get("secretKeyRef", {}).get("optional")
    ]
    assert not optional, f"optional credentials: {optional}"


def _env_from_secret(container: dict) -> dict[str, str]:
    return {
        env["name"]: env["valueFrom"]["secretKeyRef"]["key"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }


def test_every_store_requires_authentication(renders, docs: list[dict]) -> None:
    containers = {w.name: w.containers[0] for w in renders.workloads(docs)}
    mongodb = _env_from_secret(containers["mongodb"])
    # The image's entrypoint turns on --auth when the root user is given.
    assert {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"} <= set(mongodb)
    assert _env_from_secret(containers["qdrant"])["QDRANT__SERVICE__API_KEY"] == "qdrant-api-key"
    redis = containers["redis"]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert _env_from_secret(redis)["REDIS_PASSWORD"] == "redis-password"
    assert "--protected-mode" not in args
    mlflow = containers["mlflow"]
    assert "--app-name=basic-auth" in mlflow["args"]
    assert {
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    } <= set(_env_from_secret(mlflow))


def test_the_cluster_guide_creates_the_secret_in_each_environments_namespace(
    renders, docs: list[dict], overlay: str
):
    """docs/cluster.md's environment table names the namespace each overlay deploys to, and its
    Secret command creates twinops-secrets in that namespace ($NS), before anything is applied."""
    guide = (renders.root / "docs" / "cluster.md").read_text()
    namespace = next(doc for doc in docs if doc["kind"] == "ConfigMap")["metadata"]["namespace"]
    row = re.search(
        rf"^\| [^|]*\| `([a-z0-9-]+)` \| `kustomize/overlays/{re.escape(overlay)}` \|", guide, re.M
    )
    assert row, f"docs/cluster.md's environment table has no row for {overlay}"
    assert row[1] == namespace
    command = re.search(r"kubectl (-n \$NS )?create secret generic twinops-secrets", guide)
    assert command and command[1], "the Secret is created in $NS, the environment's namespace"
    assert guide.index("create secret generic twinops-secrets") < guide.index("kubectl apply -k")


def test_the_home_volume_binds_on_the_default_class(docs: list[dict], overlay: str) -> None:
    """local and dev ask for ReadWriteOnce, which any default StorageClass offers; prod names the
    ReadWriteMany class its GPU steps and servers share the volume through."""
    claim = next(
        d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "twinops-home"
    )
    if overlay in {"local", "dev"}:
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim["spec"]
    else:
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"]


def _mounts_home(workload) -> bool:
    volumes = workload.pod.get("volumes", [])
    return any(
        v.get("persistentVolumeClaim", {}).get("claimName") == DEFAULT_PROFILE.home_pvc for v in volumes
    )


def test_on_a_read_write_once_volume_its_pods_share_a_node(renders, docs: list[dict], overlay: str) -> None:
    """A ReadWriteOnce volume attaches to one node at a time: where twinops-home is ReadWriteOnce
    on a cluster of several nodes (dev), every pod that mounts it is required beside the others;
    on ReadWriteMany (prod) nothing ties them, so twin-llm stays free to go to the GPU pool. (local is
    one node.)"""
    claim = next(
        d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "twinops-home"
    )
    mounting = [w for w in renders.workloads(docs) if _mounts_home(w)]
    assert {"twinops-models", "twinops-drift", "twinops-rollout", "twin-llm", "twin-rag"} <= {
        w.name for w in mounting
    }
    for workload in mounting:
        terms = (
            workload.pod.get("affinity", {})
            .get("podAffinity", {})
            .get("requiredDuringSchedulingIgnoredDuringExecution", [])
        )
        together = [
            t for t in terms
            if t["topologyKey"] == "kubernetes.io/hostname"
            and workload.labels.items() >= t["labelSelector"]["matchLabels"].items()
        ]  # fmt: skip
        if overlay == "dev":
            assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
            assert together, f"{workload.name} may land on another node than the volume"
        elif claim["spec"]["accessModes"] == ["ReadWriteMany"]:
            assert not terms, f"{workload.name} is tied to a node for no reason"


def _waits(workload) -> tuple[set[str], set[str]]:
    """(files, services) the workload's wait-for init container waits for."""
    files: set[str] = set()
    services: set[str] = set()
    for container in workload.init_containers:
        if container["name"] != WAIT_CONTAINER:
            continue
        env = {item["name"]: item.get("value", "") for item in container.get("env", [])}
        files |= set(env.get("WAIT_FOR_FILES", "").split())
        services |= set(env.get("WAIT_FOR_SERVICES", "").split())
    return files, services


def _cached_model(home: str, reference: str) -> str:
    return f"{home}/models/{reference.removeprefix(BUNDLED_PREFIX)}/config.json"


def _needs(workload, config: dict[str, str], storage: str) -> set[str]:
    """What the workload needs at start: services as host:port, cached models as their config.json."""
    home = config["TWINOPS_HOME"]
    container = workload.containers[0]
    argv = [*container.get("command", []), *container.get("args", [])]
    line = " ".join(argv)
    needs: set[str] = set()
    for marker, wanted in _NEEDS_BY_COMMAND.items():
        if marker in line:
            needs |= wanted
    if "embedder" in needs:
        needs = (needs - {"embedder"}) | {_cached_model(home, config["TWINOPS_EMBEDDING_MODEL"])}
    for arg in argv:
        value = arg.split("=", 1)[-1]
        if value.startswith(BUNDLED_PREFIX):
            needs.add(_cached_model(home, value))
        if value.startswith("models:/"):
            needs.add("mlflow:5000")
        called = re.match(r"https?://([a-z0-9-]+-predictor)\.", value)
        if called:
            needs.add(f"{called[1]}:80")
    if "--isvc" in argv:  # the rollout controller drives this InferenceService
        needs.add(f"{argv[argv.index('--isvc') + 1]}-predictor:80")
    if storage.startswith(f"pvc://{DEFAULT_PROFILE.home_pvc}/models/"):
        needs.add(f"{home}/{storage.split('/', 3)[3]}/config.json")
    return needs


def _providers(docs: list[dict], renders) -> dict[str, set[str]]:
    """host:port -> the workloads behind it (Services by selector; KServe's <isvc>-predictor:80)."""
    workloads = renders.workloads(docs)
    providers: dict[str, set[str]] = {}
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        behind = {w.name for w in workloads if w.labels.items() >= selector.items()}
        for port in service["spec"]["ports"]:
            providers[f"{service['metadata']['name']}:{port['port']}"] = behind
    for workload in workloads:
        if workload.kind == "InferenceService":
            providers[f"{workload.name}-predictor:80"] = {workload.name}
    return providers


def _order_problems(docs: list[dict], renders) -> list[str]:
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "twinops-env")[
        "data"
    ]
    home = config["TWINOPS_HOME"]
    workloads = renders.workloads(docs)
    # KServe's runtimes read a predictor's storageUri (prod-vllm: the cached model on the volume).
    storage = {
        d["metadata"]["name"]: d["spec"]["predictor"]["model"].get("storageUri", "")
        for d in docs
        if d["kind"] == "InferenceService"
    }
    providers = _providers(docs, renders)
    cached = {_cached_model(home, name) for name in PULLERS}
    models_job = next(w for w in workloads if w.name == "twinops-models")
    assert models_job.containers[0]["command"] == ["twinops", "models", "pull"]
    problems = []
    graph: dict[str, set[str]] = {}
    for workload in workloads:
        files, services = _waits(workload)
        missing = _needs(workload, config, storage.get(workload.name, "")) - files - services
        if missing:
            problems.append(f"{workload.name} can start before {sorted(missing)}")
        if workload.name in _STARTS_FIRST and (files or services):
            problems.append(f"{workload.name} waits, but everything else waits for it")
        for file in files - cached:
            problems.append(f"{workload.name} waits for {file}, which the twinops-models Job does not write")
        if files:
            volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
            claim = volumes.get("home", {}).get("persistentVolumeClaim", {}).get("claimName")
            if claim != DEFAULT_PROFILE.home_pvc:
                problems.append(f"{workload.name} waits for files on a volume it does not mount")
        for service in services - set(providers):
            problems.append(f"{workload.name} waits for {service}, which no object in the render provides")
        graph[workload.name] = set().union(*(providers.get(service, set()) for service in services))
    # A cycle would wait for ever: walk the graph depth-first.
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for after in sorted(graph.get(name, ())):
            if state.get(after) == "open":
                problems.append(f"a cycle of waits: {' -> '.join([*path, name, after])}")
            elif after not in state:
                visit(after, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return problems


def test_no_workload_starts_before_what_it_needs(renders, docs: list[dict]) -> None:
    problems = _order_problems(docs, renders)
    assert not problems, "\n".join(problems)


def _without_wait(docs: list[dict], name: str) -> list[dict]:
    changed = copy.deepcopy(docs)
    for doc in changed:
        if doc["metadata"]["name"] == name and doc["kind"] == "InferenceService":
            doc["spec"]["predictor"].pop("initContainers")
        elif doc["metadata"]["name"] == name and "template" in doc.get("spec", {}):
            doc["spec"]["template"]["spec"].pop("initContainers")
    return changed


def test_the_order_check_bites(renders) -> None:
    """Without its wait, twin-rag (and the drift detector) could start before what they call; a
    wait for a Service nobody runs, and two workloads waiting for each other, are refused too."""
    docs = renders.kustomize("dev")
    assert any(
        "twin-rag can start before" in p for p in _order_problems(_without_wait(docs, "twin-rag"), renders)
    )
    assert any(
        "twinops-drift can start before" in p
        for p in _order_problems(_without_wait(docs, "twinops-drift"), renders)
    )
    cyclic = copy.deepcopy(docs)
    for doc in cyclic:
        if doc["kind"] == "InferenceService" and doc["metadata"]["name"] == "twin-llm":
            env = doc["spec"]["predictor"]["initContainers"][0]["env"]
            next(item for item in env if item["name"] == "WAIT_FOR_SERVICES")["value"] += (
                " twin-rag-predictor:80 nowhere:1"
            )
    problems = _order_problems(cyclic, renders)
    assert any("cycle" in p and "twin-llm" in p and "twin-rag" in p for p in problems), problems
    assert any("nowhere:1" in p for p in problems)


def _wait_scripts(renders) -> set[str]:
    scripts = set()
    for overlay in renders.environments:
        for workload in renders.workloads(renders.kustomize(overlay)):
            for container in workload.init_containers:
                if container["name"] == WAIT_CONTAINER:
                    assert container["command"][:2] == ["sh", "-c"]
                    scripts.add(container["command"][2])
    return scripts


def test_the_wait_script_says_what_it_waits_for_and_returns_once_all_is_there(
    renders, tmp_path: Path
) -> None:
    """The script every wait-for container runs (one text everywhere), run here: it logs each file
    and service it waits for, keeps waiting while they are absent, and returns 0 once they are."""
    scripts = _wait_scripts(renders)
    assert len(scripts) == 1, "every wait-for runs the same script"
    script = scripts.pop().replace("sleep 5", "sleep 0.2")  # the same loop, faster
    model = tmp_path / "models" / "all-minilm-l6-v2" / "config.json"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = socket.socket()

    def arrive() -> None:
        time.sleep(1.0)
        model.parent.mkdir(parents=True)
        model.write_text("{}")
        time.sleep(1.0)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=arrive, daemon=True).start()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "WAIT_FOR_FILES": str(model),
        "WAIT_FOR_SERVICES": f"127.0.0.1:{port}",
    }
    try:
        ran = subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        listener.close()
    lines = ran.stdout.splitlines()
    assert ran.returncode == 0, ran.stderr
    assert lines[0] == f"waiting for {model} (the twinops-models Job puts it on the volume)"
    assert f"found {model}" in lines
    assert f"waiting for 127.0.0.1:{port} to accept connections" in lines
    assert lines[-1] == f"127.0.0.1:{port} accepts connections"
    assert lines.index(f"found {model}") < lines.index(f"waiting for 127.0.0.1:{port} to accept connections")


@pytest.mark.parametrize("variable", ["WAIT_FOR_FILES", "WAIT_FOR_SERVICES"])
def test_the_wait_script_with_nothing_to_wait_for_returns_at_once(renders, variable: str) -> None:
    (script,) = _wait_scripts(renders)
    ran = subprocess.run(
        ["sh", "-c", script], env={"PATH": "/usr/local/bin:/usr/bin:/bin", variable: ""},
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert ran.returncode == 0 and ran.stdout == ""
