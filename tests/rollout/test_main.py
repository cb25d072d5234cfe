"""``twinops rollout start --detach`` then ``python -m twinops.rollout``: the controller as a Deployment
picks up the rollout recorded on the InferenceService and drives it to the end.

What runs for real: the CLI and the controller process's ``main``, MLflow (its registry receives
the release), Prometheus (Debian's binary) answering the default Istio queries from an exporter
shaped like Istio's sidecars. The Kubernetes API is the validating emulator holding the dev
render's InferenceServices (conftest.py), answering as the rollout's ServiceAccount.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from tests.rollout.conftest import ROLLOUT_ACCOUNT, aliases, canary_traffic, release_cluster
from tests.support.one_line import one_line_error

from twinops.cli import main as cli_main
from twinops.infra.registry import CHAMPION, REJECTED_TAG, RELEASED_BY_TAG, RELEASED_TAG, ReleasePath
from twinops.rollout.__main__ import main as controller_main
from twinops.training.gate import MANUAL_TAG

pytestmark = pytest.mark.slow  # a real Prometheus and MLflow per test, and the controller process

NAMESPACE = "twinops-dev"


@pytest.fixture
def cluster(mlflow_settings, mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The dev render on the emulator (answering as the rollout controller's account), twin-llm v1
    registered as challenger, Prometheus configured."""
    _, prometheus = mesh
    with release_cluster(
        mlflow_settings.mlflow_tracking_uri, prometheus.url, tmp_path, monkeypatch, account=ROLLOUT_ACCOUNT
    ) as found:
        yield found


def _traffic(mesh, *, failed: int) -> None:
    canary_traffic(mesh, NAMESPACE, failed=failed)


def _start(capsys) -> dict:
    start = [
        "rollout",
        "start",
        "--isvc",
        "twin-llm",
        "-n",
        NAMESPACE,
        "--model-uri",
        "models:/twin-llm@challenger",
    ]
    assert (
        cli_main([*start, "--steps", "50,100", "--interval", "0s", "--golden", "none", "--detach", "--json"])
        == 0
    )
    return json.loads(capsys.readouterr().out)


def test_detached_start_is_driven_to_promotion_by_the_controller_process(cluster, mesh, capsys) -> None:
    kube, client = cluster
    _traffic(mesh, failed=0)
    started = _start(capsys)
    assert started["phase"] == "running" and started["model_uri"] == "models:/twin-llm/1"  # pinned
    assert kube.state()["phase"] == "running" and len(kube.isvc_writes()) == 1

    assert controller_main(["--isvc", "twin-llm", "--namespace", NAMESPACE, "--golden", "none"]) == 0

    assert kube.state()["phase"] == "promoted" and kube.state()["registry_synced"]
    spec = kube.isvc()["spec"]
    assert "--model_uri=models:/twin-llm/1" in spec["predictor"]["model"]["args"] and "canary" not in spec
    assert aliases(client) == {CHAMPION: "1"}  # the release wrote champion; challenger is spent
    released = client.get_model_version("twin-llm", "1").tags
    assert released[RELEASED_BY_TAG] == ReleasePath.CANARY and MANUAL_TAG not in released
    assert "rollout on twinops-dev/twin-llm" in released[RELEASED_TAG]
    assert cli_main(["rollout", "status", "--isvc", "twin-llm", "-n", NAMESPACE, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [d["action"] for d in status["decisions"]] == ["start", "step_up", "promote"]
    assert status["decisions"][1]["health"]["source"].startswith("http://127.0.0.1")  # Prometheus


def test_a_failing_canary_is_rolled_back_and_tagged_rejected_in_the_registry(cluster, mesh, capsys) -> None:
    kube, client = cluster
    _traffic(mesh, failed=10)  # 25% errors
    _start(capsys)

    assert controller_main(["--isvc", "twin-llm", "--namespace", NAMESPACE, "--golden", "none"]) == 0

    state = kube.state()
    assert state["phase"] == "rolled_back" and [d["action"] for d in state["decisions"]] == [
        "start",
        "hold",
        "rollback",
    ]
    assert "canary" not in kube.isvc()["spec"]
    assert aliases(client) == {}
    rejected = client.get_model_version("twin-llm", "1").tags[REJECTED_TAG]
    assert "errors 25.0% > 2.0%" in rejected and "failed analysis 2 of 2" in rejected


def test_the_controller_process_with_nothing_to_do_exits_cleanly(cluster) -> None:
    kube, _ = cluster
    assert controller_main(["--isvc", "twin-llm", "--namespace", NAMESPACE, "--golden", "none"]) == 0
    assert kube.isvc_writes() == []


def test_the_controller_process_reports_a_missing_service_in_one_line(cluster, capsys) -> None:
    argv = ["--isvc", "nope", "--namespace", NAMESPACE, "--golden", "none"]
    line = one_line_error(controller_main, argv, capsys)
    assert line.startswith(f"error: InferenceService {NAMESPACE}/nope does not exist")


def test_watching_waits_for_a_service_that_does_not_exist_yet_and_says_so(
    cluster, capsys, monkeypatch
) -> None:
    """Applied before the InferenceServices, the Deployment's controller waits instead of exiting."""
    import twinops.rollout.__main__ as controller_process

    class StopWatching(Exception):
        pass

    naps: list[float] = []
    real_sleep = controller_process.time.sleep

    def nap(seconds: float) -> None:
        # time.sleep is patched process-wide: MLflow's and the mesh's threads sleep too, and must
        # neither be counted nor stopped (a count past 3 from them once left the loop spinning).
        if threading.current_thread() is not threading.main_thread():
            real_sleep(seconds)
            return
        naps.append(seconds)
        if len(naps) >= 3:
            raise StopWatching

    # Only for the loop: the fixtures' teardown sleeps too.
    with monkeypatch.context() as patch, pytest.raises(StopWatching):
        patch.setattr(controller_process.time, "sleep", nap)
        controller_main(["--isvc", "not-yet", "--namespace", NAMESPACE, "--golden", "none", "--watch", "30"])
    err = capsys.readouterr().err
    assert naps == [30, 30, 30]
    assert err.count(f"waiting: InferenceService {NAMESPACE}/not-yet does not exist") == 3


def test_the_health_endpoint_reports_a_stalled_loop() -> None:
    import httpx

    from twinops.rollout.__main__ import STALE_AFTER_SECONDS, Heartbeat, serve_health
    from twinops.services.process import free_port

    heartbeat, port = Heartbeat(), free_port()
    server = serve_health(port, heartbeat)
    try:
        heartbeat.beat("watching twinops-dev/twin-llm every 30s")
        healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert healthy.status_code == 200 and healthy.json()["doing"].startswith("watching")
        heartbeat.last -= STALE_AFTER_SECONDS + 1
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 503
    finally:
        server.shutdown()
        server.server_close()
