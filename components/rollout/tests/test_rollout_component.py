"""rollout: the component on a Standard-mode InferenceService, healthy and slow.

No Kubernetes API server or Prometheus can run here: the stand-ins of tests/rollout/conftest.py
serve them over HTTP on 127.0.0.1 (the component reaches the API through a kubeconfig, as a step
would outside the cluster). MLflow is real (a sqlite store).
"""

from pathlib import Path

import pytest
from tests.rollout.conftest import inference_service, kube, prometheus, write_kubeconfig  # noqa: F401 - fixtures

from twinops.pipelines.components import rollout


@pytest.fixture
def cluster(kube, prometheus, mlflow_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    config = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("TWINOPS_PROMETHEUS_URL", prometheus.url)
    service = inference_service("Standard")  # on KServe's own runtime, which reads storageUri
    service["spec"]["predictor"]["model"] = {
        "modelFormat": {"name": "huggingface"},
        "storageUri": "hf://org/v1",
    }
    kube.add(service)
    return kube, prometheus, service


@pytest.mark.parametrize(("p95", "outcome"), [(0.5, "promoted"), (30.0, "rolled_back")])
def test_rollout_component_promotes_or_rolls_back(cluster, artifacts, p95, outcome) -> None:
    emulator, fake_prometheus, service = cluster
    fake_prometheus.values = {"response_code": 0.0, "histogram_quantile": p95, "istio_requests_total": 2.0}
    metrics, report = artifacts.new("Metrics", "metrics"), artifacts.new("Markdown", "report")

    phase = rollout.python_func(
        metrics=metrics,
        report=report,
        model_uri="s3://models/twin-llm/v2",
        steps="50,100",
        interval="0s",
        golden="none",
        thresholds={"max_p95_latency_s": 5.0},
    )

    assert phase == outcome
    assert metrics.metadata["promoted"] == float(outcome == "promoted")
    stored = emulator.get("twinops", "twin-llm")["spec"]
    if outcome == "promoted":
        assert stored["predictor"]["model"]["storageUri"] == "s3://models/twin-llm/v2"
    else:
        assert stored == service["spec"]
    text = Path(report.path).read_text()
    assert f"): {outcome}" in text and "start" in text
