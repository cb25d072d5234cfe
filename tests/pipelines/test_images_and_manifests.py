"""Dockerfiles (parsed: no Docker engine here), kustomize overlays (rendered with kubectl) and the
Helm chart (structure and values; no helm binary here)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.pipelines.images import ImageFamily

ROOT = Path(__file__).resolve().parents[2]
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
}


@pytest.mark.parametrize("family", [family.value for family in ImageFamily])
def test_dockerfile(family: str) -> None:
    path = ROOT / "images" / family / "Dockerfile"
    parser = DockerfileParser(path=str(path))
    base = parser.baseimage
    assert re.search(r":\d[\w.-]*$", base), f"{family}: FROM {base} is not pinned to a version tag"
    assert "latest" not in path.read_text()
    assert set(parser.labels) >= OCI_LABELS, f"{family}: missing OCI labels"
    assert parser.labels["org.opencontainers.image.title"] == f"twinops-{family}"
    users = [item["value"] for item in parser.structure if item["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"{family} must end as a non-root user"
    runs = " ".join(item["value"] for item in parser.structure if item["instruction"] == "RUN")
    assert '"torch==2.13.0"' in runs  # the one torch the project pins
    if family == ImageFamily.QUANTIZE:
        assert "gptqmodel==" in runs and ".[ml]" not in runs  # no kfp next to gptqmodel's protobuf
    else:
        assert ".[ml]" in runs and "-c constraints.txt" in runs


def _render(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "kustomize" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_rendered_manifests_are_fresh(overlay: str) -> None:
    """manifests/<overlay>.yaml is what `make manifests` renders from kustomize (raw YAML to apply)."""
    rendered = ROOT / "manifests" / f"{overlay}.yaml"
    assert rendered.exists(), "run `make manifests`"
    assert [doc for doc in yaml.safe_load_all(rendered.read_text()) if doc] == _render(overlay), (
        "manifests/ is stale: run `make manifests`"
    )


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_renders_the_services(overlay: str) -> None:
    docs = _render(overlay)
    by_kind: dict[str, set[str]] = {}
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc)
        by_kind.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    assert {"mongodb", "qdrant", "redis"} <= by_kind["StatefulSet"]
    assert "mlflow" in by_kind["Deployment"]
    assert {DEFAULT_PROFILE.home_pvc, "mlflow-data"} <= by_kind["PersistentVolumeClaim"]
    assert DEFAULT_PROFILE.config_map in by_kind["ConfigMap"]
    assert "Secret" not in by_kind, "secrets are referenced, never shipped"
    config = next(
        doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "twinops-env"
    )
    assert set(DEFAULT_PROFILE.config_env) <= set(config["data"])
    assert config["data"]["TWINOPS_HOME"] == DEFAULT_PROFILE.home_mount_path
    namespace = {
        doc["metadata"].get("namespace") for doc in docs if doc["kind"] not in {"Namespace", "PriorityClass"}
    }
    assert namespace == {"twinops-dev" if overlay == "dev" else "twinops"}
    for doc in docs:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert not container["image"].endswith(":latest") and ":" in container["image"]
            for env in container.get("env", []):
                assert "value" not in env or "PASSWORD" not in env["name"], "no secret values in manifests"
    kinds = set(by_kind)
    serving = {"InferenceService", "ServingRuntime", "Rollout"}
    assert not kinds & serving, "serving/canary belong to later issues"
    if overlay == "prod":
        assert "twinops-gpu-quota" in by_kind["ResourceQuota"]
        assert "twinops-training" in by_kind["PriorityClass"]


def test_helm_chart_matches_the_pipelines() -> None:
    chart = ROOT / "charts" / "twinops"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["name"] == "twinops"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["homePvc"]["name"] == DEFAULT_PROFILE.home_pvc
    assert values["configMapName"] == DEFAULT_PROFILE.config_map
    assert values["secretName"] == DEFAULT_PROFILE.secret_name
    assert set(DEFAULT_PROFILE.config_env) <= set(values["settings"])
    templates = {path.name for path in (chart / "templates").glob("*.yaml")}
    assert {
        "mongodb.yaml",
        "qdrant.yaml",
        "mlflow.yaml",
        "redis.yaml",
        "home-pvc.yaml",
        "configmap.yaml",
    } <= templates
    for component in ("mongodb", "qdrant", "mlflow", "redis"):
        assert not values[component]["image"].endswith(":latest")
    assert "kind: Secret" not in "".join(p.read_text() for p in (chart / "templates").glob("*.yaml"))
