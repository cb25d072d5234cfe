"""What the rollout tests run against: an API server that validates, the shipped renders, stand-ins.

``cluster`` is the validating Kubernetes API emulator of ``tests/support/kube_api.py`` (CRD
schemas, resourceVersion, RBAC) holding the InferenceServices that a render of the deployment
ships (``kubectl kustomize kustomize/overlays/<env>`` or ``helm template`` with the environment's
values), with the status KServe would report, and answering as the rollout controller's own
ServiceAccount would be answered (the render's Role: a verb it lacks is a 403). A patch KServe's
CRD refuses is a 422 here, as on a cluster.

Helpers shared with other test folders: ``serve_app`` (an ASGI app on uvicorn in a thread) and
``write_kubeconfig``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.kube_api import (
    KubeApi,
    ServiceAccount,
    kube_clients_for,
    namespace_of,
    render,
    running_kube_api,
    write_kubeconfig,
)
from tests.support.prometheus import IstioExporter, running_prometheus

NAME = "twin-llm"
ROLLOUT_ACCOUNT = "twinops-rollout"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
STATE_ANNOTATION = "rollout.twinops.io/state"
# (overlay, renderer): the shipped deployments, each in the mode it sets.
RENDERS = [("dev", "kustomize"), ("prod", "kustomize"), ("dev", "helm"), ("prod", "helm")]

__all__ = ["write_kubeconfig"]
# Standard mode names the canary's pods {isvc}-{canary name}-predictor; v1 of the registry.
CANARY_V1_WORKLOAD = f"{NAME}-v1-predictor"


def stable_address(namespace: str) -> str:
    return f"http://{NAME}-predictor.{namespace}.svc.cluster.local"


def kserve_status(mode: str, namespace: str, *, latest_url: str | None = None) -> dict:
    """The status KServe reports for twin-llm in ``mode`` (Knative: with a tagged latest revision)."""
    address = {"url": stable_address(namespace)}
    status: dict[str, Any] = {"url": f"http://{NAME}.{namespace}.example.com", "address": address}
    if mode == "Serverless":
        status["components"] = {
            "predictor": {
                "url": f"http://{NAME}-predictor.{namespace}.example.com",
                "address": address,
                "latestCreatedRevision": f"{NAME}-predictor-00002",
                "traffic": [
                    {"tag": "prev", "percent": 90, "revisionName": f"{NAME}-predictor-00001"},
                    {
                        "tag": "latest",
                        "latestRevision": True,
                        "percent": 10,
                        "revisionName": f"{NAME}-predictor-00002",
                        "url": latest_url or f"http://latest-{NAME}-predictor.{namespace}.example.com",
                    },
                ],
            }
        }
    return status


@dataclass
class Cluster:
    """The API emulator holding one render's InferenceServices, and clients as the rollout's account."""

    api: KubeApi
    namespace: str
    mode: str
    clients: Any

    def isvc(self, name: str = NAME) -> dict:
        return self.api.get("inferenceservices", self.namespace, name)

    def state(self, name: str = NAME) -> dict | None:
        text = (self.isvc(name)["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
        return json.loads(text) if text else None

    def isvc_writes(self) -> list:
        """Accepted writes to InferenceServices, in order."""
        return [
            request
            for request in self.api.writes()
            if "/inferenceservices/" in request.path and request.status < 300
        ]

    def refused(self) -> list:
        return [request for request in self.api.requests if request.status >= 400]


@contextmanager
def running_cluster(
    overlay: str,
    renderer: str,
    *,
    mode: str | None = None,
    latest_url: str | None = None,
    account: str = ROLLOUT_ACCOUNT,
    twins: str | None = None,
):
    """The render's InferenceServices on a validating API, in ``mode`` (default: the render's own),
    answering as ``account`` (the rollout controller's; ``pipeline-runner`` for a KFP step). With
    ``twins``, twin-llm serves many twins on one base, as an operator switches it
    (``--twins=<twins>`` in place of its ``--model_uri``; docs/cluster.md)."""
    docs = render(overlay, renderer)
    if twins is not None:
        llm = next(d for d in docs if d["kind"] == "InferenceService" and d["metadata"]["name"] == NAME)
        model = llm["spec"]["predictor"]["model"]
        model["args"] = [
            f"--twins={twins}" if arg.startswith("--model_uri") else arg for arg in model["args"]
        ]
    namespace = namespace_of(overlay)
    identity = ServiceAccount.from_rendered(docs, namespace, account)
    assert identity.rules, f"the {overlay} render ({renderer}) binds no Role to {account}"
    with running_kube_api(identity=identity) as api:
        services = [doc for doc in docs if doc["kind"] == "InferenceService"]
        for service in services:
            annotations = service["metadata"].setdefault("annotations", {})
            if mode is not None:
                annotations[DEPLOYMENT_MODE] = mode
            api.add({**service, "metadata": {**service["metadata"], "namespace": namespace}})
        twin = api.get("inferenceservices", namespace, NAME)
        shipped_mode = (twin["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE, "Standard")
        api.set_status(
            "inferenceservices",
            namespace,
            NAME,
            kserve_status(shipped_mode, namespace, latest_url=latest_url),
        )
        clients = kube_clients_for(api.url)
        try:
            yield Cluster(api=api, namespace=namespace, mode=shipped_mode, clients=clients)
        finally:
            clients.close()


@pytest.fixture(params=RENDERS, ids=[f"{o}-{r}" for o, r in RENDERS])
def cluster(request) -> Iterator[Cluster]:
    """Each shipped render, in the mode it sets."""
    overlay, renderer = request.param
    with running_cluster(overlay, renderer) as found:
        yield found


@pytest.fixture
def knative_cluster() -> Iterator[Cluster]:
    """The dev render with twin-llm switched to Serverless (Knative) mode."""
    with running_cluster("dev", "kustomize", mode="Serverless") as found:
        yield found


@pytest.fixture
def mesh(tmp_path: Path):
    """An Istio-shaped exporter and a real Prometheus scraping it, fresh per test (a rate() window
    must hold only that test's traffic)."""
    with IstioExporter() as exporter, running_prometheus([exporter.url], tmp_path / "prometheus") as prom:
        yield exporter, prom


def canary_traffic(mesh, namespace: str, *, failed: int, workload: str = CANARY_V1_WORKLOAD) -> None:
    """40 requests to the canary's pods as Istio reports them, ``failed`` of them 503s, scraped."""
    exporter, prometheus = mesh
    exporter.declare(workload, namespace, codes=(200, 503))
    prometheus.wait_for_scrapes(2)
    exporter.record(workload, namespace, count=40 - failed, code=200, latency_ms=300)
    if failed:
        exporter.record(workload, namespace, count=failed, code=503, latency_ms=300)
    prometheus.wait_for_scrapes(2)


def register_challenger(tracking_uri: str, folder: Path):
    """twin-llm v1 in MLflow's registry, nominated (``challenger``); the client."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    client.create_registered_model(NAME)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    client.create_model_version(NAME, source=str(folder), tags={"model_dir": str(folder)})
    client.set_registered_model_alias(NAME, "challenger", "1")
    return client


@contextmanager
def release_cluster(tracking_uri: str, prometheus_url: str, tmp_path: Path, monkeypatch, *, account: str):
    """What a release runs against: the dev render on the emulator answering as ``account``, reached
    through a kubeconfig; twin-llm v1 nominated in MLflow; Prometheus configured. Yields (cluster,
    MLflow client)."""
    from twinops.settings import get_settings

    client = register_challenger(tracking_uri, tmp_path / "twin-llm-v1")
    with running_cluster("dev", "kustomize", account=account) as found:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", found.api.url)))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("TWINOPS_PROMETHEUS_URL", prometheus_url)
        get_settings.cache_clear()
        yield found, client


def aliases(client) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(NAME).aliases.items()}


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """``app`` on uvicorn on a free 127.0.0.1 port in a thread; yields its URL, stops it after."""
    import uvicorn

    from twinops.services.process import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
