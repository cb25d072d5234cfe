"""Every pod twinops starts meets the "restricted" Pod Security Standard, with a read-only root
filesystem whose writable paths are volumes, and no API token unless the pod needs the API."""

from __future__ import annotations

import pytest

# Writable volume kinds for paths a process writes (HOME, /tmp, data folders).
_WRITABLE = {"emptyDir", "persistentVolumeClaim"}


def _violations(workload) -> list[str]:
    where = f"{workload.kind}/{workload.name}"
    pod = workload.pod
    found = []
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        found.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    if security.get("runAsUser") == 0:
        found.append(f"{where}: pod runs as uid 0")
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        found.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(f"{where}: {flag}")
    if any("hostPath" in volume for volume in pod.get("volumes", [])):
        found.append(f"{where}: hostPath volume")
    for container in [*workload.init_containers, *workload.containers]:
        at = f"{where} container {container['name']}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{at}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            found.append(f"{at}: privileged")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            found.append(f"{at}: capabilities do not drop ALL")
        if context.get("capabilities", {}).get("add"):
            found.append(f"{at}: adds capabilities")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{at}: root filesystem is writable")
        if context.get("runAsUser") == 0:
            found.append(f"{at}: runs as uid 0")
    return found


def test_every_pod_is_restricted(renders, docs: list[dict]) -> None:
    workloads = renders.workloads(docs)
    assert {w.name for w in workloads} >= {"mlflow", "mongodb", "qdrant", "redis", "twin-llm", "twin-rag"}
    problems = [problem for workload in workloads for problem in _violations(workload)]
    assert not problems, "\n".join(problems)


def test_home_and_tmp_are_writable_volumes(renders, docs: list[dict]) -> None:
    """With a read-only root, HOME (library caches) and /tmp must be volumes the pod can write."""
    problems = []
    for workload in renders.workloads(docs):
        volumes = {volume["name"]: volume for volume in workload.pod.get("volumes", [])}
        writable = set(workload.claim_templates) | {
            name for name, volume in volumes.items() if _WRITABLE & set(volume)
        }
        for container in workload.containers:
            mounts = {
                mount["mountPath"]: mount["name"]
                for mount in container.get("volumeMounts", [])
                if not mount.get("readOnly")
            }
            home = next((env["value"] for env in container.get("env", []) if env["name"] == "HOME"), None)
            # Python's tempfile needs /tmp wherever a HOME is redirected for library caches.
            needed = ([home, "/tmp"] if home else []) + (["/tmp"] if "/tmp" in mounts else [])
            for path in sorted(set(needed)):
                if mounts.get(path) not in writable:
                    problems.append(f"{workload.kind}/{workload.name}: {path} is not a writable volume")
    assert not problems, "\n".join(problems)


# RBAC that binds KFP's step ServiceAccount (pipeline-runner), which no twinops pod runs as.
_PIPELINE_BINDINGS = {"twinops-trainjobs", "twinops-rollout-pipeline"}


def _pipeline_rbac(doc: dict) -> bool:
    name = doc["metadata"]["name"]
    return name in _PIPELINE_BINDINGS or name.endswith("-training-runtimes")


def test_only_the_rollout_controller_may_reach_the_api(docs: list[dict], renders) -> None:
    """Pods get no API token except the canary controller's; its ServiceAccount, the one with a Role,
    may only drive InferenceServices, record Events and hold its Leases (namespace-scoped)."""
    accounts = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ServiceAccount"}
    with_token = set()
    for workload in renders.workloads(docs):
        assert workload.pod["serviceAccountName"] in accounts, workload.name
        if workload.pod.get("automountServiceAccountToken") is not False:
            with_token.add((workload.kind, workload.name, workload.pod["serviceAccountName"]))
    assert with_token == {("Deployment", "twinops-rollout", "twinops-rollout")}
    # The pipeline steps' RBAC binds KFP's ServiceAccount, which no twinops pod runs as
    # (test_controllers.py checks what it grants).
    roles = [doc for doc in docs if doc["kind"] in {"Role", "ClusterRole"} and not _pipeline_rbac(doc)]
    assert [role["metadata"]["name"] for role in roles] == ["twinops-rollout"]
    assert roles[0]["kind"] == "Role", "namespace-scoped only"
    granted = {(group, resource) for rule in roles[0]["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}  # fmt: skip
    assert granted == {
        ("serving.kserve.io", "inferenceservices"),
        ("", "events"),
        ("coordination.k8s.io", "leases"),
    }
    assert all(_pipeline_rbac(doc) for doc in docs if doc["kind"] == "ClusterRoleBinding")
    for binding in (doc for doc in docs if doc["kind"] == "RoleBinding" and not _pipeline_rbac(doc)):
        for subject in binding["subjects"]:
            assert subject["name"] in accounts
            assert subject["namespace"] == binding["metadata"]["namespace"], "bound in another namespace"


@pytest.mark.parametrize("field", ["runAsNonRoot", "readOnlyRootFilesystem"])
def test_the_check_refuses_a_relaxed_pod(renders, field: str) -> None:
    workload = next(w for w in renders.workloads(renders.kustomize("dev")) if w.name == "mlflow")
    if field == "runAsNonRoot":
        workload.pod = {**workload.pod, "securityContext": {**workload.pod["securityContext"], field: False}}
    else:
        container = workload.containers[0]
        workload.containers = [
            {**container, "securityContext": {**container["securityContext"], field: False}}
        ]
    assert _violations(workload)
