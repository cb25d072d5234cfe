"""Everything a rendered object refers to exists: images (a Dockerfile here, or a pinned upstream tag
that matches the library twinops talks to it with), ConfigMaps and their keys, Secret keys (the
`kubectl create secret` in docs/cluster.md lists them), PVCs, volumes, ports, ServiceAccounts, and the
in-cluster URLs of the settings."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from urllib.parse import urlsplit

from dockerfile_parse import DockerfileParser

from twinops import __version__
from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.pipelines.images import DEFAULT_REGISTRY
from twinops.settings import Settings

# twinops images built from another family's Dockerfile with a build argument (Makefile `images`).
_VARIANTS = {"serve-gpu": ("serve", "TORCH_INDEX_URL")}
# Settings the ConfigMap may carry that are not TWINOPS_* (read by Hugging Face libraries).
_LIBRARY_ENV = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}


def _kinds(docs: list[dict]) -> dict[str, dict[str, dict]]:
    kinds: dict[str, dict[str, dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return kinds


def _images(renders, docs: list[dict]) -> set[str]:
    images = {c["image"] for w in renders.workloads(docs) for c in w.containers if "image" in c}
    images |= {
        c["image"] for doc in docs if doc["kind"] == "ServingRuntime" for c in doc["spec"]["containers"]
    }
    return images


def test_twinops_images_are_built_here(renders, docs: list[dict]) -> None:
    ours = sorted(image for image in _images(renders, docs) if image.startswith(f"{DEFAULT_REGISTRY}/"))
    assert ours
    for image in ours:
        repository, tag = image.rsplit(":", 1)
        assert tag == __version__, f"{image}: tag is not the package version {__version__}"
        family = repository.removeprefix(f"{DEFAULT_REGISTRY}/twinops-")
        folder, build_arg = _VARIANTS.get(family, (family, None))
        dockerfile = renders.root / "images" / folder / "Dockerfile"
        assert dockerfile.exists(), f"{image}: no images/{folder}/Dockerfile"
        if build_arg:
            assert f"ARG {build_arg}=" in dockerfile.read_text()
            assert f"--build-arg {build_arg}=" in (renders.root / "Makefile").read_text()
        built = re.search(r"for f in ([\w\s-]+);", (renders.root / "Makefile").read_text())
        assert built and family in built.group(1).split(), f"`make images` skips {family}"


def test_upstream_images_are_pinned_to_the_clients_versions(renders, docs: list[dict]) -> None:
    """The servers' images match the client libraries twinops installs."""
    from qdrant_client.common.version_check import is_compatible

    upstream = {image.split(":")[0]: image.split(":")[1] for image in _images(renders, docs)}
    upstream = {repo: tag for repo, tag in upstream.items() if not repo.startswith(DEFAULT_REGISTRY)}
    for repository, tag in upstream.items():
        assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{repository}:{tag} is not pinned to a version"
    # MLflow's server runs in the twinops data image, from the core lock: the clients' own version,
    # with the basic-auth app's Flask-WTF (MLflow's image leaves the [auth] extra out).
    assert "ghcr.io/mlflow/mlflow" not in upstream
    mlflow = next(w for w in renders.workloads(docs) if w.name == "mlflow").containers[0]
    assert mlflow["image"].split(":")[0].endswith("/twinops-data")
    assert "-r locks/core.txt" in (renders.root / "images" / "data" / "Dockerfile").read_text()
    lines = (renders.root / "locks" / "core.txt").read_text().splitlines()
    locked = dict(line.split("==", 1) for line in lines if "==" in line)
    assert locked["mlflow"] == version("mlflow") and "flask-wtf" in locked
    qdrant_server = upstream["qdrant/qdrant"].removeprefix("v").removesuffix("-unprivileged")
    assert is_compatible(version("qdrant-client"), qdrant_server), (
        f"qdrant server {qdrant_server} is too far from qdrant-client {version('qdrant-client')}"
    )


def _guide_secret_command(renders) -> str:
    guide = (renders.root / "docs" / "cluster.md").read_text()
    command = re.search(r"kubectl [^`]*create secret generic twinops-secrets[^`]*", guide)
    assert command, "docs/cluster.md shows how to create the Secret twinops-secrets"
    return command.group(0)


def _guide_secret_keys(renders) -> set[str]:
    return set(re.findall(r"--from-literal=([a-z0-9-]+)=", _guide_secret_command(renders)))


def _guide_secret_values(renders) -> dict[str, str]:
    """key -> the literal docs/cluster.md passes (quotes removed, shell variables left as written)."""
    return {
        key: value.strip("'\"")
        for key, value in re.findall(r"--from-literal=([a-z0-9-]+)=(\S+)", _guide_secret_command(renders))
    }


def test_config_and_secret_references_exist(renders, docs: list[dict]) -> None:
    kinds = _kinds(docs)
    config_maps = kinds["ConfigMap"]
    secret_keys = _guide_secret_keys(renders)
    assert set(DEFAULT_PROFILE.secret_env) <= secret_keys, "the pipeline steps read keys the guide omits"
    containers = [(w.name, c) for w in renders.workloads(docs) for c in w.containers]
    containers += [
        (d["metadata"]["name"], c)
        for d in docs
        if d["kind"] == "ServingRuntime"
        for c in d["spec"]["containers"]
    ]
    for owner, container in containers:
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, owner
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]["data"]
            if "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["name"] == DEFAULT_PROFILE.secret_name, owner
                assert ref["secretKeyRef"]["key"] in secret_keys, f"{owner}: {ref['secretKeyRef']['key']}"
    # Keys mounted as files (prod's MongoDB replica-set key).
    for workload in renders.workloads(docs):
        for volume in workload.pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == DEFAULT_PROFILE.secret_name, workload.name
                for item in volume["secret"]["items"]:
                    assert item["key"] in secret_keys, f"{workload.name}: {item['key']}"


def test_no_credential_is_written_into_a_manifest(renders, docs: list[dict]) -> None:
    """Credentials come from the Secret by reference; no env var that names one carries a value."""
    credential = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|_URI$|USERNAME")
    for workload in renders.workloads(docs):
        for container in workload.containers:
            for env in container.get("env", []):
                if credential.search(env["name"]) and env["name"] != "TWINOPS_MLFLOW_TRACKING_URI":
                    assert "value" not in env, f"{workload.name}: {env['name']} is written in the manifest"
    config = _kinds(docs)["ConfigMap"][DEFAULT_PROFILE.config_map]["data"]
    assert not [key for key in config if credential.search(key) and key != "TWINOPS_MLFLOW_TRACKING_URI"]


def test_configmap_settings_are_settings(docs: list[dict]) -> None:
    """Every key in the ConfigMap is read: a TWINOPS_* field, a library's variable, or a value the
    manifests expand into a container's command or args as $(KEY) (a typo would be ignored)."""
    data = _kinds(docs)["ConfigMap"][DEFAULT_PROFILE.config_map]["data"]
    fields = {f"TWINOPS_{name.upper()}" for name in Settings.model_fields}
    expanded = set(re.findall(r"\$\(([A-Z0-9_]+)\)", json.dumps(docs)))
    unknown = {key for key in data if key not in fields | _LIBRARY_ENV | expanded}
    assert not unknown, f"not settings: {sorted(unknown)}"
    assert {"KSERVE_INGRESS_GATEWAY_URL", "KSERVE_INGRESS_DOMAIN"} <= expanded  # twin-rag's LLM route
    assert Settings(**{k.removeprefix("TWINOPS_").lower(): v for k, v in data.items() if k in fields})


def test_in_cluster_urls_name_services_and_ports(renders, docs: list[dict]) -> None:
    kinds = _kinds(docs)
    data = kinds["ConfigMap"][DEFAULT_PROFILE.config_map]["data"]
    urls = {key: data[key] for key in ("TWINOPS_QDRANT_URL", "TWINOPS_MLFLOW_TRACKING_URI")}
    # The Redis URL carries the password: the Secret of docs/cluster.md holds it (key redis-url).
    urls["redis-url"] = _guide_secret_values(renders)["redis-url"]
    for key, value in urls.items():
        url = urlsplit(value)
        service = kinds["Service"].get(url.hostname)
        assert service, f"{key}: no Service {url.hostname}"
        assert url.port in {port["port"] for port in service["spec"]["ports"]}, key
    rag = kinds["InferenceService"]["twin-rag"]
    namespace = rag["metadata"]["namespace"]
    expand = {**data, "POD_NAMESPACE": namespace}
    rag_args = dict(
        re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: expand[m[1]], arg).removeprefix("--").split("=", 1)
        for arg in rag["spec"]["predictor"]["model"]["args"]
    )
    # twin-llm through the gateway at its route's host (KServe's domainTemplate {name}-{namespace}.
    # {ingressDomain}), where the canary split is; the reranker (no canary) at its predictor.
    assert rag_args["llm_url"] == f"{data['KSERVE_INGRESS_GATEWAY_URL']}/openai/v1"
    assert rag_args["llm_host"] == f"twin-llm-{namespace}.{data['KSERVE_INGRESS_DOMAIN']}"
    assert "twin-llm" in kinds["InferenceService"]
    if "reranker_url" in rag_args:
        host = urlsplit(rag_args["reranker_url"]).hostname.split(".")[0]
        assert host.removesuffix("-predictor") in kinds["InferenceService"], rag_args


def test_volumes_and_claims_exist(renders, docs: list[dict]) -> None:
    claims = set(_kinds(docs)["PersistentVolumeClaim"])
    for workload in renders.workloads(docs):
        volumes = {volume["name"]: volume for volume in workload.pod.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, workload.name
        for container in workload.containers:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in workload.claim_templates, (
                    f"{workload.name}: mount of unknown volume {mount['name']}"
                )
    for isvc in _kinds(docs)["InferenceService"].values():
        storage = isvc["spec"]["predictor"]["model"].get("storageUri", "")
        if storage.startswith("pvc://"):
            assert storage.removeprefix("pvc://").split("/")[0] in claims


def _container_ports(container: dict) -> dict[str | int, int]:
    ports: dict[str | int, int] = {}
    for port in container.get("ports", []):
        ports[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    return ports


def _selected(selector: dict, labels: dict) -> bool:
    if all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items()):
        for expression in selector.get("matchExpressions", []):
            present = expression["key"] in labels
            if expression["operator"] == "Exists" and not present:
                return False
            if expression["operator"] == "In" and labels.get(expression["key"]) not in expression["values"]:
                return False
        return True
    return False


def test_ports_exist_and_ingress_allows_them(docs: list[dict]) -> None:
    """Probes and Services name ports their containers open, and a NetworkPolicy lets them in."""
    kinds = _kinds(docs)
    pods = {}  # name -> (pod labels, ports of its containers)
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            template = doc["spec"]["template"]
            ports: dict = {}
            for container in template["spec"]["containers"]:
                ports |= _container_ports(container)
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    action = container.get(probe, {})
                    port = (action.get("httpGet") or action.get("tcpSocket") or {}).get("port")
                    assert port is None or port in ports, f"{doc['metadata']['name']} {probe}: port {port}"
            pods[doc["metadata"]["name"]] = (template["metadata"]["labels"], ports)
    runtime_ports = _container_ports(kinds["ServingRuntime"]["twinops"]["spec"]["containers"][0])
    for name, isvc in kinds["InferenceService"].items():
        model = isvc["spec"]["predictor"]["model"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in model:
                assert model[probe]["httpGet"]["port"] in runtime_ports, f"{name} {probe}"
        pods[name] = ({"serving.kserve.io/inferenceservice": name}, runtime_ports)
    policies = list(kinds["NetworkPolicy"].values())
    for service in kinds["Service"].values():
        selected = [p for p in pods.values() if _selected({"matchLabels": service["spec"]["selector"]}, p[0])]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for labels, ports in selected:
            for port in service["spec"]["ports"]:
                target = ports.get(port["targetPort"])
                assert target, (
                    f"Service {service['metadata']['name']}: no container port {port['targetPort']}"
                )
                allowed = {
                    rule_port["port"]
                    for policy in policies
                    if _selected(policy["spec"]["podSelector"], labels)
                    for rule in policy["spec"].get("ingress", [])
                    for rule_port in rule.get("ports", [])
                }
                assert target in allowed, f"no NetworkPolicy lets traffic into {labels} port {target}"
    for labels, _ in [pods["twin-llm"]]:
        allowed = {
            rule_port["port"]
            for policy in policies
            if _selected(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("ingress", [])
            for rule_port in rule.get("ports", [])
        }
        assert set(runtime_ports.values()) <= allowed, "the predictors' HTTP and gRPC ports"


def test_serve_dockerfile(renders) -> None:
    parser = DockerfileParser(path=str(renders.root / "images" / "serve" / "Dockerfile"))
    assert re.search(r"^python:3\.11[\w.-]*-slim", parser.baseimage)
    assert parser.labels["org.opencontainers.image.title"] == "twinops-serve"
    users = [item["value"] for item in parser.structure if item["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    runs = " ".join(item["value"] for item in parser.structure if item["instruction"] == "RUN")
    assert "--no-deps -r locks/core.txt" in runs, "kserve and the ml stack at the core lock's versions"
    assert "twinops models pull" in runs, "the bundled models are cached at build time"
    assert "--no-deps -r requirements-gptq-kernels.txt" in runs, "a GPTQ twin serves on int4 kernels"
    # The local overlay serves the folders the build caches.
    local = _kinds(renders.kustomize("local"))["InferenceService"]
    cached = "/opt/twinops/bundled/models/"
    assert "TWINOPS_HOME=/opt/twinops/bundled twinops models pull" in runs
    for name in ("twin-llm", "twin-reranker"):
        assert local[name]["spec"]["predictor"]["model"]["args"][0].startswith(f"--model_dir={cached}")


def test_the_models_job_caches_the_bundled_models_onto_the_shared_volume(docs: list[dict]) -> None:
    job = _kinds(docs)["Job"]["twinops-models"]["spec"]["template"]["spec"]
    container = job["containers"][0]
    assert container["command"] == ["twinops", "models", "pull"]
    assert container["image"].split(":")[0].endswith("/twinops-data")
    home = next(m for m in container["volumeMounts"] if m["name"] == "home")
    assert home["mountPath"] == DEFAULT_PROFILE.home_mount_path
    claim = next(v for v in job["volumes"] if v["name"] == "home")["persistentVolumeClaim"]["claimName"]
    assert claim == DEFAULT_PROFILE.home_pvc


def test_dockerignore_keeps_environments_out_and_sources_in(renders) -> None:
    """The build context leaves out .venv*, .git and state, and keeps what the Dockerfiles COPY."""
    import fnmatch

    patterns = [
        line.strip()
        for line in (renders.root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
            for pattern in patterns
            for prefix in prefixes
        )

    for path in (
        ".git/config",
        ".venv/bin/python",
        ".venv-quantize/bin/python",
        ".twinops/models",
        ".tools/bin/helm",
    ):
        assert ignored(path), f"{path} would be sent to the Docker daemon"
    for dockerfile in (renders.root / "images").glob("*/Dockerfile"):
        parser = DockerfileParser(path=str(dockerfile))
        for item in parser.structure:
            if item["instruction"] == "COPY":
                for source in item["value"].split()[:-1]:
                    if not source.startswith("--"):
                        assert not ignored(source.rstrip("/")), f"{dockerfile}: COPY {source} is ignored"
