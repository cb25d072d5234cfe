"""Day two: node drains, the GPU quota at twin-llm's peak, an uninstall that keeps the data,
probes on every long-running workload, and renders that apply twice without a change."""

from __future__ import annotations

import pytest

from twinops.pipelines.gpu import DEFAULT_PROFILE

# KServe runs a Standard-mode canary (spec.canary[]) at fixed replicas, its default one:
# twinops.rollout.kserve drops the autoscaling fields there.
CANARY_REPLICAS = 1


def _kinds(docs: list[dict]) -> dict[str, dict[str, dict]]:
    kinds: dict[str, dict[str, dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return kinds


def _max_replicas(workload) -> int:
    if workload.kind == "InferenceService":
        return workload.pod["maxReplicas"]
    return workload.pod.get("replicas", 1) if workload.kind != "Job" else 1


def _replicas(renders, docs: list[dict]) -> dict[str, tuple[int, dict]]:
    """workload -> (the most replicas it may run, its pods' labels), for what keeps running."""
    found = {}
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            found[doc["metadata"]["name"]] = (
                doc["spec"].get("replicas", 1),
                doc["spec"]["template"]["metadata"]["labels"],
            )
    for workload in renders.workloads(docs):
        if workload.kind == "InferenceService":
            found[workload.name] = (workload.pod["maxReplicas"], workload.labels)
    return found


def test_every_multi_replica_workload_keeps_all_but_one_through_a_drain(renders, docs: list[dict]) -> None:
    budgets = list(_kinds(docs).get("PodDisruptionBudget", {}).values())
    for name, (most, labels) in _replicas(renders, docs).items():
        covering = [b for b in budgets if labels.items() >= b["spec"]["selector"]["matchLabels"].items()]
        if most > 1:
            assert len(covering) == 1, f"{name} runs up to {most} replicas with {len(covering)} budgets"
            assert covering[0]["spec"].get("maxUnavailable") == 1, f"{name}: one pod at a time"
        for budget in covering:
            # A budget that allows no disruption at one replica would block every drain for ever.
            assert budget["spec"].get("maxUnavailable", 0) >= 1 or "minAvailable" not in budget["spec"], name
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(labels.items() >= selector.items() for _, labels in _replicas(renders, docs).values()), (
            f"PodDisruptionBudget {budget['metadata']['name']} selects no workload"
        )


def _gpus(resources: dict) -> int:
    return int(resources.get("requests", {}).get(DEFAULT_PROFILE.accelerator_type, 0))


def test_the_gpu_quota_holds_twin_llms_peak_and_a_pipeline_step(renders, docs: list[dict]) -> None:
    """Admission checks the quota before scheduling (preemption cannot help a refused pod): at
    maxReplicas, a rolling update's surge pod and the canary's predictor must fit, with room left
    for a GPU pipeline step."""
    kinds = _kinds(docs)
    gpu_workloads = [w for w in renders.workloads(docs) if _gpus(w.containers[0].get("resources", {}))]
    if not gpu_workloads:
        assert "ResourceQuota" not in kinds
        return
    quota = int(
        kinds["ResourceQuota"]["twinops-gpu-quota"]["spec"]["hard"][
            f"requests.{DEFAULT_PROFILE.accelerator_type}"
        ]
    )
    peak = 0
    for workload in gpu_workloads:
        per_pod = _gpus(workload.containers[0]["resources"])
        surge = workload.pod.get("deploymentStrategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
        assert isinstance(surge, int), f"{workload.name}: a percent surge cannot be checked against the quota"
        peak += per_pod * (workload.pod["maxReplicas"] + surge + CANARY_REPLICAS)
    assert peak + DEFAULT_PROFILE.accelerator_limit <= quota, f"peak {peak} GPUs + a step > quota {quota}"


def test_the_quota_check_bites(renders) -> None:
    docs = [dict(d) for d in renders.kustomize("prod")]
    for index, doc in enumerate(docs):
        if doc["kind"] == "ResourceQuota":
            docs[index] = {**doc, "spec": {"hard": {f"requests.{DEFAULT_PROFILE.accelerator_type}": "4"}}}
    with pytest.raises(AssertionError, match="quota 4"):
        test_the_gpu_quota_holds_twin_llms_peak_and_a_pipeline_step(renders, docs)


def test_helm_uninstall_keeps_the_data(renders, overlay: str) -> None:
    """The shared volume and MLflow's store are kept (helm.sh/resource-policy: keep); the
    StatefulSets' claims are never deleted with them."""
    kinds = _kinds(renders.helm(overlay))
    for claim in kinds["PersistentVolumeClaim"].values():
        annotations = claim["metadata"].get("annotations", {})
        assert annotations.get("helm.sh/resource-policy") == "keep", claim["metadata"]["name"]
    for statefulset in kinds["StatefulSet"].values():
        policy = statefulset["spec"].get("persistentVolumeClaimRetentionPolicy", {})
        assert policy.get("whenDeleted", "Retain") == "Retain", statefulset["metadata"]["name"]


def test_every_long_running_workload_is_probed(renders, docs: list[dict]) -> None:
    unprobed = []
    for workload in renders.workloads(docs):
        if workload.kind == "Job":
            continue
        for container in workload.containers:
            missing = [p for p in ("readinessProbe", "livenessProbe") if p not in container]
            if missing:
                unprobed.append(workload.name)
    assert not unprobed, f"without probes: {sorted(unprobed)}"


def test_applying_twice_changes_nothing(renders, overlay: str) -> None:
    """A render is the same every time and names every object (no generateName, no hash suffix
    that changes per render), so a second `kubectl apply -k` or `helm upgrade` finds nothing to do."""
    assert renders.kustomize_text(overlay) == renders.kustomize_text(overlay)
    namespace, args = renders.environments[overlay]
    first, second = renders.helm_template(namespace, *args), renders.helm_template(namespace, *args)
    assert first.returncode == 0 and first.stdout == second.stdout
    for doc in renders.kustomize(overlay):
        assert "generateName" not in doc["metadata"] and doc["metadata"]["name"], doc["kind"]
    generators = (renders.overlays_dir / overlay / "kustomization.yaml").read_text()
    assert "Generator" not in generators or "disableNameSuffixHash: true" in generators
