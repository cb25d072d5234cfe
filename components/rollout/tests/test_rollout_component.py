"""rollout: the deployment pipeline's step releases the gate's nominee, as KFP runs it.

The step reaches the Kubernetes API through a kubeconfig, as a step would outside the cluster:
the validating emulator (tests/support/kube_api.py) holding the dev render's InferenceServices and
answering as KFP's ``pipeline-runner`` account, so the render's RBAC (InferenceServices and the
Lease) is what allows or refuses it. Prometheus is real (Debian's binary) reading an Istio-shaped
exporter; MLflow is real (its registry receives the release).
"""

from pathlib import Path

import pytest
from tests.rollout.conftest import (  # noqa: F401 - mesh is a fixture
    aliases,
    canary_traffic,
    mesh,
    release_cluster,
)

from twinops.infra.registry import CHAMPION, REJECTED_TAG
from twinops.pipelines.components import rollout

pytestmark = pytest.mark.slow  # a real Prometheus and MLflow server

NAMESPACE = "twinops-dev"


@pytest.fixture
def cluster(mlflow_settings, mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    _, prometheus = mesh
    with release_cluster(
        mlflow_settings.mlflow_tracking_uri, prometheus.url, tmp_path, monkeypatch, account="pipeline-runner"
    ) as found:
        yield found


@pytest.mark.parametrize(("failed", "outcome"), [(0, "promoted"), (10, "rolled_back")])
def test_rollout_component_releases_or_rejects_the_nominee(cluster, mesh, artifacts, failed, outcome) -> None:  # noqa: F811
    kube, client = cluster
    canary_traffic(mesh, NAMESPACE, failed=failed)
    metrics, report = artifacts.new("Metrics", "metrics"), artifacts.new("Markdown", "report")

    phase = rollout.python_func(
        metrics=metrics,
        report=report,
        namespace=NAMESPACE,
        steps="50,100",
        interval="0s",
        golden="none",
        thresholds={"failure_threshold": 1},
    )

    assert phase == outcome
    assert metrics.metadata["promoted"] == float(outcome == "promoted")
    assert [r for r in kube.refused() if r.method != "GET"] == []  # (a GET 404: no Lease yet)
    served = " ".join(kube.isvc()["spec"]["predictor"]["model"]["args"])
    if outcome == "promoted":
        assert "--model_uri=models:/twin-llm/1" in served and aliases(client) == {CHAMPION: "1"}
    else:
        assert "models:/twin-llm/1" not in served and aliases(client) == {}
        assert REJECTED_TAG in client.get_model_version("twin-llm", "1").tags
    text = Path(report.path).read_text()
    assert f"): {outcome}" in text and "start" in text
