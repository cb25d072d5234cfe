"""``twinops rollout start --detach`` then ``python -m twinops.rollout``: the controller as a Deployment
picks up the rollout recorded on the InferenceService and drives it to the end.

The Kubernetes API and Prometheus are the stand-ins of conftest.py (none can run here); MLflow is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.rollout.conftest import inference_service, write_kubeconfig

from twinops.cli import main as cli_main
from twinops.rollout.__main__ import main as controller_main
from twinops.rollout.kserve import STATE_ANNOTATION
from twinops.settings import get_settings


@pytest.fixture
def cluster(kube, prometheus, mlflow_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("TWINOPS_PROMETHEUS_URL", prometheus.url)
    get_settings.cache_clear()
    prometheus.values = {"response_code": 0.0, "histogram_quantile": 0.4, "istio_requests_total": 2.0}
    service = inference_service("Knative")
    service["spec"]["predictor"]["model"] = {
        "modelFormat": {"name": "huggingface"},
        "storageUri": "hf://org/v1",
    }
    kube.add(service)
    return kube


def _phase(kube) -> str:
    return json.loads(kube.get("twinops", "twin-llm")["metadata"]["annotations"][STATE_ANNOTATION])["phase"]


def test_detached_start_is_driven_to_promotion_by_the_controller_process(cluster, capsys) -> None:
    start = ["rollout", "start", "--isvc", "twin-llm", "--model-uri", "s3://m/v2", "--steps", "50,100"]
    assert cli_main([*start, "--interval", "0s", "--golden", "none", "--detach", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "running"
    assert _phase(cluster) == "running" and len(cluster.patches) == 1

    assert controller_main(["--isvc", "twin-llm", "--golden", "none"]) == 0

    assert _phase(cluster) == "promoted"
    assert cluster.spec_patches()[1:] == [
        {"predictor": {"canaryTrafficPercent": 100}},
        {"predictor": {"canaryTrafficPercent": None}},
    ]
    assert cli_main(["rollout", "status", "--isvc", "twin-llm", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [d["action"] for d in status["decisions"]] == ["start", "step_up", "promote"]


def test_the_controller_process_with_nothing_to_do_exits_cleanly(cluster) -> None:
    assert controller_main(["--isvc", "twin-llm", "--golden", "none"]) == 0
    assert cluster.patches == []


def test_the_controller_process_reports_a_missing_service_in_one_line(cluster, capsys) -> None:
    assert controller_main(["--isvc", "nope", "--golden", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: InferenceService twinops/nope does not exist") and err.count("\n") == 1
