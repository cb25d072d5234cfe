"""prod's stores as their upstreams run them distributed: MongoDB as a replica set, Qdrant as a
cluster, in both renders, each piece agreeing with the others (the Job's members are the
StatefulSet's pods behind its headless Service, the peers' URIs name a Service that publishes
them before they are ready), and the scripts the pods run, run here with stand-ins for the
binaries they start."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from twinops.settings import Settings


@pytest.fixture(params=["kustomize", "helm"])
def prod(renders, request) -> dict[tuple[str, str], dict]:
    docs = renders.kustomize("prod") if request.param == "kustomize" else renders.helm("prod")
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_mongodb_is_a_replica_set_that_the_job_initiates(prod) -> None:
    members = prod[("StatefulSet", "mongodb")]["spec"]
    pod = members["template"]["spec"]
    mongod = pod["containers"][0]["args"]
    assert mongod[0] == "mongod"  # the entrypoint creates the root user only for `mongod ...`
    job = prod[("Job", "mongodb-replica-set")]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python", "-m", "twinops.infra.mongo_replica_set"]
    assert _arg(job["args"], "--replica-set") == _arg(mongod, "--replSet")
    assert _arg(job["args"], "--service") == members["serviceName"] == "mongodb"
    assert int(_arg(job["args"], "--members")) == members["replicas"] == 3
    governing = prod[("Service", members["serviceName"])]["spec"]
    assert governing["clusterIP"] == "None"  # pods get <pod>.<service> DNS names
    key_dir = str(Path(_arg(mongod, "--keyFile")).parent)
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert key_dir in mounts
    budget = prod[("PodDisruptionBudget", "mongodb")]["spec"]
    assert (
        budget["maxUnavailable"] == 1
        and budget["selector"]["matchLabels"] == members["selector"]["matchLabels"]
    )


def test_the_key_file_is_copied_readable_by_mongod_alone(prod, tmp_path: Path) -> None:
    """mongod refuses a key file that the group or others can read: the init container's script,
    run here on a copy of the mounts, leaves the key mode 0400."""
    pod = prod[("StatefulSet", "mongodb")]["spec"]["template"]["spec"]
    init = next(c for c in pod["initContainers"] if c["name"] == "keyfile")
    script = init["command"][2]
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("k" * 756)
    (secret / "key").chmod(0o440)
    target = tmp_path / "keyfile"
    target.mkdir()
    script = script.replace("/etc/mongodb-keyfile-secret", str(secret)).replace(
        "/etc/mongodb-keyfile", str(target)
    )
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((target / "key").stat().st_mode) == 0o400
    assert (target / "key").read_text() == "k" * 756
    assert "readable by the mongodb user alone" in result.stdout
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keyfile"]["emptyDir"]["medium"] == "Memory"  # the key never lands on a disk
    assert volumes["keyfile-secret"]["secret"]["items"] == [{"key": "mongodb-replica-set-key", "path": "key"}]


@pytest.mark.parametrize("peer", [0, 2])
def test_qdrant_peer_0_starts_the_cluster_and_the_others_join_it(prod, tmp_path: Path, peer: int) -> None:
    peers = prod[("StatefulSet", "qdrant")]["spec"]
    container = peers["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["p2p"] == int(
        env["QDRANT__CLUSTER__P2P__PORT"]
    )
    # The image's ./entrypoint.sh, here a stand-in that prints the arguments it is given.
    entrypoint = tmp_path / "entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\necho "qdrant $*"\n')
    entrypoint.chmod(0o755)
    result = subprocess.run(
        container["command"], cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "HOSTNAME": f"qdrant-{peer}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    started = result.stdout.strip().splitlines()[-1].split()
    headless = peers["serviceName"]
    assert _arg(started, "--uri") == f"http://qdrant-{peer}.{headless}:6335"
    if peer == 0:
        assert "--bootstrap" not in started
    else:
        assert _arg(started, "--bootstrap") == f"http://qdrant-0.{headless}:6335"
    service = prod[("Service", headless)]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in service["ports"]}["p2p"] == 6335
    assert peers["replicas"] == 3
    assert prod[("PodDisruptionBudget", "qdrant")]["spec"]["maxUnavailable"] == 1


def test_collections_get_as_many_copies_as_the_cluster_can_hold(prod, monkeypatch) -> None:
    data = prod[("ConfigMap", "twinops-env")]["data"]
    for key in [k for k in os.environ if k.startswith("TWINOPS_")]:
        monkeypatch.delenv(key)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    factor = Settings().qdrant_replication_factor
    assert 2 <= factor <= prod[("StatefulSet", "qdrant")]["spec"]["replicas"]


@pytest.mark.parametrize("overlay", ["local", "dev"])
def test_local_and_dev_keep_one_pod_each(renders, overlay: str) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in renders.kustomize(overlay)}
    assert docs[("StatefulSet", "mongodb")]["spec"]["replicas"] == 1
    assert docs[("StatefulSet", "qdrant")]["spec"]["replicas"] == 1
    assert ("Job", "mongodb-replica-set") not in docs
    assert "TWINOPS_QDRANT_REPLICATION_FACTOR" not in docs[("ConfigMap", "twinops-env")]["data"]
