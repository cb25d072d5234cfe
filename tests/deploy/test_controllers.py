"""The two long-running twinops processes beside the servers: the online drift detector the
predictors' loggers post to (``twinops drift serve``, Deployment and Service ``twinops-drift``) and
the canary controller (``python -m twinops.rollout``, Deployment ``twinops-rollout``). Every
environment runs both, with arguments twinops accepts, in an image whose environment has what the
command needs, reachable by (and only by) whom it serves."""

from __future__ import annotations

from urllib.parse import urlsplit

import typer.main

from twinops.cli import app
from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.rollout.__main__ import parse_args

_PREDICTOR_LABEL = "serving.kserve.io/inferenceservice"


def _kinds(docs: list[dict]) -> dict[str, dict[str, dict]]:
    kinds: dict[str, dict[str, dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return kinds


def _pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def _parse_cli(argv: list[str]):
    """The twinops CLI's parse of argv (subcommands, options and their types), without running it:
    the click context of the command argv names (typer's own click: duck-typed)."""
    command = typer.main.get_command(app)
    while hasattr(command, "commands"):  # a group
        name, *argv = argv
        assert name in command.commands, f"twinops has no command {name}"
        command = command.commands[name]
    return command.make_context(name, argv)


def _dockerfile(renders, family: str) -> str:
    return (renders.root / "images" / family / "Dockerfile").read_text()


def _image_has(renders, family: str, lock: str, packages: set[str]) -> None:
    """The image installs ``lock`` (exact versions, see tests/test_locks.py) and it holds ``packages``."""
    assert f"-r locks/{lock}" in _dockerfile(renders, family)
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (renders.root / "locks" / lock).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert packages <= pinned, packages - pinned


def test_the_loggers_reach_the_drift_detector(docs: list[dict]) -> None:
    """The predictors' logger URL is the twinops-drift Service of their namespace, whose pods serve
    on the target port, and a NetworkPolicy admits the predictors' pods there."""
    kinds = _kinds(docs)
    service = kinds["Service"]["twinops-drift"]
    deployment = kinds["Deployment"]["twinops-drift"]
    namespace = service["metadata"]["namespace"]
    for isvc in kinds["InferenceService"].values():
        url = urlsplit(isvc["spec"]["predictor"]["logger"]["url"])
        assert url.hostname == f"twinops-drift.{namespace}", isvc["metadata"]["name"]
        assert (url.port or 80) in {port["port"] for port in service["spec"]["ports"]}
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()
    container = _pod(deployment)["containers"][0]
    argv = [*container["command"], *container["args"]]
    served_port = int(argv[argv.index("--port") + 1])
    assert {"name": "http", "containerPort": served_port} in container["ports"]
    policy = kinds["NetworkPolicy"]["twinops-drift"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= service["spec"]["selector"].items()
    (rule,) = policy["ingress"]
    assert {"protocol": "TCP", "port": served_port} in rule["ports"]
    predictors = [
        source["podSelector"]
        for source in rule["from"]
        if "podSelector" in source and "namespaceSelector" not in source
    ]
    assert predictors == [{"matchExpressions": [{"key": _PREDICTOR_LABEL, "operator": "Exists"}]}], (
        "only the predictors of this namespace (and Prometheus) post to the detector"
    )


def test_the_drift_detector_runs_twinops_drift_serve_in_a_single_replica(renders, docs: list[dict]) -> None:
    deployment = _kinds(docs)["Deployment"]["twinops-drift"]
    assert deployment["spec"]["replicas"] == 1, "batches and the cool-down live in one process"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = _pod(deployment)
    container = pod["containers"][0]
    assert container["command"][:3] == ["twinops", "drift", "serve"]
    context = _parse_cli([*container["command"][1:], *container["args"]])
    assert context.params["host"] == "0.0.0.0", "reachable from other pods"
    assert context.params["reference"] == "latest"
    assert context.params["backend"].value == "evidently", "the backend the image's environment has"
    # twinops-serve is the core environment (locks/core.txt, where the detector is tested): evidently
    # (the default backend), the bundled embedder's loader, and cloudevents (kserve) for --reply-url.
    assert container["image"].split(":")[0].endswith("/twinops-serve")
    _image_has(renders, "serve", "core.txt", {"evidently", "sentence-transformers", "cloudevents", "kserve"})
    home = next(m for m in container["volumeMounts"] if m["name"] == "home")
    assert home["mountPath"] == DEFAULT_PROFILE.home_mount_path and not home.get("readOnly")
    env = {item["name"]: item for item in container["env"]}
    assert env["TWINOPS_MONGODB_URI"]["valueFrom"]["secretKeyRef"]["name"] == DEFAULT_PROFILE.secret_name
    assert pod["automountServiceAccountToken"] is False


def test_the_rollout_controller_patches_through_its_role(renders, docs: list[dict]) -> None:
    """It runs as twinops-rollout, bound in its namespace to the Role on InferenceServices, and
    watches an InferenceService this environment deploys."""
    kinds = _kinds(docs)
    deployment = kinds["Deployment"]["twinops-rollout"]
    assert deployment["spec"]["replicas"] == 1, "two controllers would decide twice"
    pod = _pod(deployment)
    assert pod["serviceAccountName"] == "twinops-rollout"
    binding = kinds["RoleBinding"]["twinops-rollout"]
    assert binding["roleRef"]["name"] in kinds["Role"]
    assert {
        "kind": "ServiceAccount",
        "name": "twinops-rollout",
        "namespace": binding["metadata"]["namespace"],
    } in (binding["subjects"])
    container = pod["containers"][0]
    assert container["command"][:3] == ["python", "-m", "twinops.rollout"]
    options = parse_args(container["command"][3:])
    assert options.isvc in kinds["InferenceService"]
    assert options.watch > 0, "a Deployment keeps looking for rollouts"
    # The probes call the health endpoint the controller serves (its loop's heartbeat).
    assert {"name": "http", "containerPort": options.health_port} in container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["TWINOPS_MONGODB_URI"]["valueFrom"]["secretKeyRef"]["name"] == DEFAULT_PROFILE.secret_name
    assert container["image"].split(":")[0].endswith("/twinops-data")
    _image_has(renders, "data", "core.txt", {"kubernetes", "mlflow", "pymongo"})
    home = next(m for m in container["volumeMounts"] if m["name"] == "home")
    assert home["readOnly"] is True, "it only reads the golden set"


def _grants(rules: list[dict], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_pipeline_may_run_trainjobs_in_its_namespace(docs: list[dict]) -> None:
    """SFT/DPO with train_on=trainjob (twinops.pipelines.train_placement): the steps' ServiceAccount
    creates, follows and deletes TrainJobs and reads what the SDK reads (runtimes, the job's pods, logs
    and events) in its own namespace, ClusterTrainingRuntimes through a ClusterRole of its own; the
    runtime is the ConfigMap's setting, which every step gets."""
    from twinops.settings import Settings

    kinds = _kinds(docs)
    binding = kinds["RoleBinding"]["twinops-trainjobs"]
    namespace = binding["metadata"]["namespace"]
    runner = {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": namespace}
    assert binding["subjects"] == [runner]
    rules = kinds["Role"][binding["roleRef"]["name"]]["rules"]
    group = "trainer.kubeflow.org"
    assert _grants(rules, group, "trainjobs") == {"create", "get", "list", "watch", "delete"}
    assert {"get", "list"} <= _grants(rules, group, "trainingruntimes")
    assert {"get", "list", "watch"} <= _grants(rules, "", "pods") & _grants(rules, "", "events")
    assert "get" in _grants(rules, "", "pods/log")
    assert not _grants(rules, "", "secrets"), "nothing beyond what following a job needs"

    [cluster_binding] = [
        b for b in kinds["ClusterRoleBinding"].values() if b["roleRef"]["name"].endswith("training-runtimes")
    ]
    assert cluster_binding["subjects"] == [runner]
    assert cluster_binding["metadata"]["name"].startswith(namespace), "one per environment"
    cluster_rules = kinds["ClusterRole"][cluster_binding["roleRef"]["name"]]["rules"]
    assert _grants(cluster_rules, group, "clustertrainingruntimes") == {"get", "list"}

    config = kinds["ConfigMap"][DEFAULT_PROFILE.config_map]["data"]
    assert config["TWINOPS_TRAINJOB_RUNTIME"] == Settings.model_fields["trainjob_runtime"].default
    assert "TWINOPS_TRAINJOB_RUNTIME" in DEFAULT_PROFILE.config_env


# What a driver of a canary does on the API: read and watch the InferenceService, patch its spec
# and state together, record Events, and hold the Lease `twinops-rollout-<isvc>`.
_ROLLOUT_GRANTS = {
    ("serving.kserve.io", "inferenceservices"): {"get", "list", "watch", "patch", "update"},
    ("", "events"): {"create"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"},
}


def test_both_rollout_drivers_may_drive_a_canary_and_hold_its_lease(docs: list[dict]) -> None:
    """The controller (twinops-rollout) and the deployment pipeline's rollout step (KFP's
    pipeline-runner) are bound, in their namespace, to a Role granting what a driver does, and no
    more; `create` on leases is not restricted by name (the API cannot check a name on create)."""
    kinds = _kinds(docs)
    namespace = kinds["ConfigMap"][DEFAULT_PROFILE.config_map]["metadata"]["namespace"]
    drivers = {}
    for binding in kinds["RoleBinding"].values():
        role = kinds["Role"].get(binding["roleRef"]["name"])
        if role is None or _grants(role["rules"], "serving.kserve.io", "inferenceservices") == set():
            continue
        for subject in binding["subjects"]:
            drivers[subject["name"]] = (subject["namespace"], role)
    assert set(drivers) == {"twinops-rollout", "pipeline-runner"}
    for name, (subject_namespace, role) in drivers.items():
        assert subject_namespace == namespace, name
        for (group, resource), verbs in _ROLLOUT_GRANTS.items():
            assert _grants(role["rules"], group, resource) == verbs, f"{name}: {resource}"
        granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
        assert granted == set(_ROLLOUT_GRANTS), f"{name} is granted more than a driver needs"
        assert not [rule for rule in role["rules"] if rule.get("resourceNames")], (
            "resourceNames would refuse the Lease's create"
        )


def test_the_canary_analysis_queries_kube_prometheus(docs: list[dict]) -> None:
    """TWINOPS_PROMETHEUS_URL is set (without it the analysis has nothing to measure) to the
    Service a kube-prometheus install runs."""
    config = _kinds(docs)["ConfigMap"][DEFAULT_PROFILE.config_map]["data"]
    assert config["TWINOPS_PROMETHEUS_URL"] == "http://prometheus-k8s.monitoring.svc:9090"
