"""What each environment deploys: the rendered files are fresh, kustomize and Helm render the same
objects, and every environment has the services, the serving side and its own settings."""

from __future__ import annotations

import difflib

import pytest
import yaml

from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.settings import Settings

# Labels and annotations only one of the two tools writes (Helm's bookkeeping, the release or
# overlay instance name, Helm's hook for the models Job).
_TOOL_LABELS = {"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart"}


def _comparable(docs: list[dict]) -> dict[tuple[str, str], dict]:
    """Objects by (kind, name), without the Namespace (Helm leaves it to --create-namespace)."""
    objects = {}
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        meta = doc["metadata"]
        if "labels" in meta:
            meta = {**meta, "labels": {k: v for k, v in meta["labels"].items() if k not in _TOOL_LABELS}}
        if "annotations" in meta:
            kept = {k: v for k, v in meta["annotations"].items() if not k.startswith("helm.sh/")}
            meta = {key: value for key, value in meta.items() if key != "annotations"}
            if kept:
                meta["annotations"] = kept
        objects[(doc["kind"], doc["metadata"]["name"])] = {**doc, "metadata": meta}
    return objects


def test_every_overlay_has_an_environment(renders) -> None:
    """Each kustomize overlay is paired with the Helm values that render it (and rendered to manifests/)."""
    assert set(renders.overlays()) == set(renders.environments)
    assert {"local", "dev", "prod"} <= set(renders.overlays())
    for name in ("local", "dev", "prod"):
        assert (renders.chart / f"values-{name}.yaml").exists()


def test_rendered_manifests_are_fresh(renders, overlay: str) -> None:
    """manifests/<overlay>.yaml is what `make manifests` renders from kustomize (raw YAML to apply)."""
    rendered = renders.root / "manifests" / f"{overlay}.yaml"
    assert rendered.exists(), "run `make manifests`"
    assert rendered.read_text() == renders.kustomize_text(overlay), (
        "manifests/ is stale: run `make manifests`"
    )


def test_no_stale_rendered_files(renders) -> None:
    stale = {path.stem for path in (renders.root / "manifests").glob("*.yaml")} - set(renders.overlays())
    assert not stale, f"manifests/ has files of no overlay: {sorted(stale)}"


def test_kustomize_and_helm_render_the_same_objects(renders, overlay: str) -> None:
    from_kustomize = _comparable(renders.kustomize(overlay))
    from_helm = _comparable(renders.helm(overlay))
    assert sorted(from_kustomize) == sorted(from_helm), "the two render different objects"
    for key in sorted(from_kustomize):
        if from_kustomize[key] != from_helm[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(from_kustomize[key], sort_keys=True).splitlines(),
                yaml.safe_dump(from_helm[key], sort_keys=True).splitlines(),
                "kustomize",
                "helm",
                lineterm="",
            )
            pytest.fail(f"{overlay}: {key} differs\n" + "\n".join(diff))


def _by_kind(docs: list[dict]) -> dict[str, dict[str, dict]]:
    kinds: dict[str, dict[str, dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return kinds


def test_each_environment_deploys_the_whole_stack(docs: list[dict], overlay: str) -> None:
    kinds = _by_kind(docs)
    assert {"mongodb", "qdrant", "redis"} <= set(kinds["StatefulSet"])
    assert "mlflow" in kinds["Deployment"]
    assert "twinops-models" in kinds["Job"]
    assert {DEFAULT_PROFILE.home_pvc, "mlflow-data"} <= set(kinds["PersistentVolumeClaim"])
    assert set(kinds["ServingRuntime"]) == {"twinops"}
    # The reranker only where one is served without training (local: the bundled encoder).
    reranker = {"twin-reranker"} if overlay == "local" else set()
    assert set(kinds["InferenceService"]) == {"twin-llm", "twin-rag", *reranker}
    assert {"twinops-services", "twinops-serving", "twinops-rollout"} <= set(kinds["ServiceAccount"])
    default_deny = kinds["NetworkPolicy"]["twinops-default-deny"]["spec"]
    assert default_deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert "Secret" not in kinds, "secrets are referenced, never shipped"
    config = kinds["ConfigMap"][DEFAULT_PROFILE.config_map]
    assert set(DEFAULT_PROFILE.config_env) <= set(config["data"])
    assert config["data"]["TWINOPS_HOME"] == DEFAULT_PROFILE.home_mount_path
    namespace = "twinops-dev" if overlay == "dev" else "twinops"
    namespaced = {
        doc["metadata"].get("namespace")
        for doc in docs
        if doc["kind"] not in {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"}
    }
    assert namespaced == {namespace}
    for isvc in kinds["InferenceService"].values():
        predictor = isvc["spec"]["predictor"]
        assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
        assert predictor["logger"] == {"mode": "all", "url": f"http://twinops-drift.{namespace}/"}


def test_local_serves_the_bundled_models_on_one_cpu_replica(renders, renderer: str) -> None:
    docs = renders.kustomize("local") if renderer == "kustomize" else renders.helm("local")
    kinds = _by_kind(docs)
    for isvc in kinds["InferenceService"].values():
        predictor = isvc["spec"]["predictor"]
        assert predictor["minReplicas"] == predictor["maxReplicas"] == 1
        assert "nvidia.com/gpu" not in str(predictor)
    for name in ("twin-llm", "twin-reranker"):
        args = kinds["InferenceService"][name]["spec"]["predictor"]["model"]["args"]
        assert args[0].startswith("--model_dir=/opt/twinops/bundled/models/"), args
    assert kinds["PersistentVolumeClaim"]["twinops-home"]["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_dev_and_prod_start_on_the_base_model_pinned_in_the_spec(renders, renderer: str, overlay: str):
    """A fresh cluster's registry is empty: twin-llm serves the base model the models Job caches,
    named in its spec (never an alias resolved at start), and twin-rag ranks by cosine (no reranker
    until one is registered)."""
    docs = renders.kustomize(overlay) if renderer == "kustomize" else renders.helm(overlay)
    isvcs = _by_kind(docs)["InferenceService"]
    args = isvcs["twin-llm"]["spec"]["predictor"]["model"]["args"]
    assert args == [f"--model_uri={Settings.model_fields['base_model'].default}"]
    assert "twin-reranker" not in isvcs
    rag_args = isvcs["twin-rag"]["spec"]["predictor"]["model"]["args"]
    assert not [arg for arg in rag_args if arg.startswith("--reranker_url")]
    served = str([isvc["spec"] for isvc in isvcs.values()])
    assert "@champion" not in served and "@challenger" not in served


def test_prod_vllm_starts_on_the_cached_base_model(renders, renderer: str) -> None:
    docs = renders.kustomize("prod-vllm") if renderer == "kustomize" else renders.helm("prod-vllm")
    model = _by_kind(docs)["InferenceService"]["twin-llm"]["spec"]["predictor"]["model"]
    base = Settings.model_fields["base_model"].default.removeprefix("bundled:")
    assert model["storageUri"] == f"pvc://{DEFAULT_PROFILE.home_pvc}/models/{base}"


@pytest.mark.parametrize("overlay", ["prod", "prod-vllm"])
def test_prod_puts_twin_llm_on_the_gpu_pool(renders, overlay: str) -> None:
    """The GPU node pool as the pipelines target it (ClusterProfile), a 7B-sized request, canary-ready."""
    kinds = _by_kind(renders.kustomize(overlay))
    predictor = kinds["InferenceService"]["twin-llm"]["spec"]["predictor"]
    assert predictor["nodeSelector"] == DEFAULT_PROFILE.gpu_node_selector
    assert predictor["tolerations"] == [
        toleration.model_dump(exclude_none=True) for toleration in DEFAULT_PROFILE.gpu_tolerations
    ]
    resources = predictor["model"]["resources"]
    assert resources["limits"][DEFAULT_PROFILE.accelerator_type] == "1"
    assert int(resources["requests"]["memory"].removesuffix("Gi")) >= 16  # a 7B model's weights and more
    assert predictor["priorityClassName"] in kinds["PriorityClass"]
    assert "twinops-gpu-quota" in kinds["ResourceQuota"]
    for isvc in kinds["InferenceService"].values():
        assert isvc["spec"]["predictor"]["minReplicas"] >= 2
        assert isvc["spec"]["predictor"]["deploymentStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    storage_class = kinds["PersistentVolumeClaim"]["twinops-home"]["spec"].get("storageClassName")
    assert storage_class, "the shared ReadWriteMany volume names a storage class in prod"
    if overlay == "prod-vllm":
        model = predictor["model"]
        assert model["modelFormat"] == {"name": "huggingface"} and "--backend=vllm" in model["args"]
        assert "runtime" not in model and model["storageUri"].startswith("pvc://twinops-home/")
    else:
        assert predictor["model"]["image"].split(":")[0].endswith("/twinops-serve-gpu")


def test_chart_defaults_match_the_pipelines(renders) -> None:
    """The chart names what the compiled pipelines reference (twinops.pipelines.gpu.ClusterProfile)."""
    values = yaml.safe_load((renders.chart / "values.yaml").read_text())
    assert values["homePvc"]["name"] == DEFAULT_PROFILE.home_pvc
    assert values["configMapName"] == DEFAULT_PROFILE.config_map
    assert values["secretName"] == DEFAULT_PROFILE.secret_name
    assert set(DEFAULT_PROFILE.config_env) <= set(values["settings"])
    assert values["gpuNodePool"]["nodeSelector"] == DEFAULT_PROFILE.gpu_node_selector
    assert values["gpuNodePool"]["tolerations"] == [
        toleration.model_dump(exclude_none=True) for toleration in DEFAULT_PROFILE.gpu_tolerations
    ]
