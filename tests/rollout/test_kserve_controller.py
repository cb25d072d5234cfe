"""The canary controller against InferenceServices, through the official ``kubernetes`` client.

No Kubernetes API server can run on this machine: the ``kube`` fixture is an in-process stand-in
over HTTP (see conftest.py) that stores the object, applies merge patches and records them, and
``prometheus`` a stand-in for Prometheus' query API. The golden-set scorer is a function that
records which URL it was asked to score and answers a fixed score (scoring itself is tested in
test_scoring.py). Sleeping is recorded, not done.
"""

from __future__ import annotations

import copy
import json

import pytest
from tests.rollout.conftest import LATEST_URL, NAME, NAMESPACE, STABLE_ADDRESS, STABLE_ARGS, inference_service

from twinops.errors import ConfigError, NotFound
from twinops.rollout.controller import RolloutController
from twinops.rollout.health import PrometheusHealth
from twinops.rollout.kserve import (
    DECISION_ANNOTATION,
    STATE_ANNOTATION,
    TAG_ROUTING,
    KServeTarget,
)
from twinops.rollout.models import PinnedModel
from twinops.rollout.plan import Thresholds

CANARY_URI = "models:/twin-llm/7"
CANARY_ARGS = [f"--model_uri={CANARY_URI}"]
STANDARD_CANARY_URL = "http://twin-llm-v7-predictor.twinops.svc.cluster.local"
STEPS = (10, 25, 50, 100)
INTERVAL = 300.0
PINNED = PinnedModel(
    uri=CANARY_URI,
    requested_uri="models:/twin-llm@challenger",
    registry_name="twin-llm",
    registry_version="7",
)

# (canary golden score, error rate, p95 seconds) per scenario; the stable scores 0.50.
SCENARIOS = {"healthy": (0.49, 0.0, 0.8), "failing": (0.49, 0.25, 0.8), "slow": (0.49, 0.0, 25.0)}


class RecordingScorer:
    def __init__(self, canary_score: float, stable_url: str) -> None:
        self.canary_score = canary_score
        self.stable_url = stable_url
        self.calls: list[tuple[str, str]] = []

    def __call__(self, url: str, model: str) -> float:
        self.calls.append((url, model))
        return 0.50 if url == f"{self.stable_url}/openai/v1" else self.canary_score


def controller_for(kube_apis, prometheus, scenario: str) -> tuple[RolloutController, RecordingScorer, list]:
    score, error_rate, p95 = SCENARIOS[scenario]
    prometheus.values = {"response_code": error_rate, "histogram_quantile": p95, "istio_requests_total": 3.0}
    api, core = kube_apis
    scorer = RecordingScorer(score, STABLE_ADDRESS)
    slept: list[float] = []
    controller = RolloutController(
        KServeTarget(NAME, NAMESPACE, api=api, core=core),
        health=PrometheusHealth(prometheus.url),
        scorer=scorer,
        model_name=NAME,
        sleep=slept.append,
    )
    return controller, scorer, slept


def run_rollout(controller: RolloutController):
    state = controller.start(PINNED, steps=STEPS, interval_seconds=INTERVAL, thresholds=Thresholds())
    return controller.run(state)


@pytest.mark.parametrize("mode", ["Serverless", "Knative"])
def test_knative_healthy_canary_steps_up_through_canary_traffic_percent_then_promotes(
    kube, kube_apis, prometheus, mode
) -> None:
    kube.add(inference_service(mode))
    controller, scorer, slept = controller_for(kube_apis, prometheus, "healthy")

    final = run_rollout(controller)

    assert [d.action for d in final.decisions] == ["start", "step_up", "step_up", "step_up", "promote"]
    assert [d.percent for d in final.decisions] == [10, 25, 50, 100, 100]
    assert kube.spec_patches() == [
        {"predictor": {"model": {"args": CANARY_ARGS}, "canaryTrafficPercent": 10}},
        {"predictor": {"canaryTrafficPercent": 25}},
        {"predictor": {"canaryTrafficPercent": 50}},
        {"predictor": {"canaryTrafficPercent": 100}},
        {"predictor": {"canaryTrafficPercent": None}},
    ]
    assert kube.patches[0]["metadata"]["annotations"][TAG_ROUTING] == "true"
    assert set(kube.content_types) == {"application/merge-patch+json"}
    # The stable is scored once before anything moves; the canary on its own latest- URL.
    assert scorer.calls[0] == (f"{STABLE_ADDRESS}/openai/v1", NAME)
    assert scorer.calls[1:] == [(f"{LATEST_URL}/openai/v1", NAME)] * 4
    assert all('destination_workload=~"twin-llm-predictor-00002.*"' in q for q in prometheus.queries)
    assert slept == [INTERVAL] * 4

    stored = kube.get(NAMESPACE, NAME)
    assert stored["spec"]["predictor"]["model"]["args"] == CANARY_ARGS
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    annotations = stored["metadata"]["annotations"]
    assert json.loads(annotations[STATE_ANNOTATION])["phase"] == "promoted"
    assert annotations[DECISION_ANNOTATION].startswith("promote")
    assert [e["reason"] for e in kube.events] == ["RolloutStarted"] + ["RolloutStepUp"] * 3 + [
        "RolloutPromoted"
    ]
    assert {e["involvedObject"]["name"] for e in kube.events} == {NAME}


@pytest.mark.parametrize("mode", ["Standard", "RawDeployment"])
def test_standard_healthy_canary_steps_up_through_spec_canary_then_becomes_the_predictor(
    kube, kube_apis, prometheus, mode
) -> None:
    original = inference_service(mode)
    kube.add(original)
    controller, scorer, _ = controller_for(kube_apis, prometheus, "healthy")

    final = run_rollout(controller)

    assert [d.action for d in final.decisions] == ["start", "step_up", "step_up", "step_up", "promote"]
    # The canary predictor: the stable one with the new model and a name, without the
    # autoscaling fields KServe's webhook refuses on a canary.
    canary_predictor = {
        "serviceAccountName": "twinops-serving",
        "model": {"modelFormat": {"name": "twinops"}, "runtime": "twinops", "args": CANARY_ARGS},
        "name": "v7",
    }
    assert kube.spec_patches()[:4] == [
        {"canary": [{"predictor": canary_predictor, "trafficPercent": percent}]} for percent in STEPS
    ]
    assert kube.spec_patches()[4] == {
        "predictor": {"model": {"args": CANARY_ARGS}, "name": "v7"},
        "canary": None,
    }
    assert all("canaryTrafficPercent" not in json.dumps(patch) for patch in kube.spec_patches())
    assert scorer.calls[1:] == [(f"{STANDARD_CANARY_URL}/openai/v1", NAME)] * 4
    assert all('destination_workload=~"twin-llm-v7-predictor.*"' in q for q in prometheus.queries)

    stored = kube.get(NAMESPACE, NAME)
    expected_predictor = copy.deepcopy(original["spec"]["predictor"])
    expected_predictor["model"]["args"] = CANARY_ARGS
    expected_predictor["name"] = "v7"
    assert stored["spec"] == {"predictor": expected_predictor}  # scaling kept, canary gone


@pytest.mark.parametrize("mode", ["Knative", "Standard"])
@pytest.mark.parametrize(
    ("scenario", "reason"), [("failing", "errors 25.0% > 2.0%"), ("slow", "p95 25.00s > 10s")]
)
def test_failing_or_slow_canary_is_rolled_back_at_the_first_step(
    kube, kube_apis, prometheus, mode, scenario, reason
) -> None:
    original = inference_service(mode)
    kube.add(original)
    controller, _, slept = controller_for(kube_apis, prometheus, scenario)

    final = run_rollout(controller)

    assert [d.action for d in final.decisions] == ["start", "rollback"]
    assert final.phase == "rolled_back" and final.percent == 0
    assert reason in final.decisions[-1].reasons
    assert slept == [INTERVAL]
    patches = kube.spec_patches()
    # Traffic goes to 0 first, then the previous predictor comes back.
    if mode == "Knative":
        assert patches[1] == {"predictor": {"canaryTrafficPercent": 0}}
        assert patches[2] == {"predictor": {"model": {"args": STABLE_ARGS}, "canaryTrafficPercent": None}}
    else:
        assert patches[1]["canary"][0]["trafficPercent"] == 0
        assert patches[2]["canary"] is None
    assert len(patches) == 3
    stored = kube.get(NAMESPACE, NAME)
    assert stored["spec"] == original["spec"]
    assert json.loads(stored["metadata"]["annotations"][STATE_ANNOTATION])["phase"] == "rolled_back"
    assert kube.events[-1]["reason"] == "RolloutRolledBack" and kube.events[-1]["type"] == "Warning"


def test_a_canary_scoring_below_the_stable_is_rolled_back(kube, kube_apis, prometheus) -> None:
    kube.add(inference_service("Knative"))
    controller, scorer, _ = controller_for(kube_apis, prometheus, "healthy")
    scorer.canary_score = 0.30

    final = run_rollout(controller)

    assert [d.action for d in final.decisions] == ["start", "rollback"]
    assert any(r.startswith("score 0.300 < 0.450") for r in final.decisions[-1].reasons)


def test_no_traffic_in_prometheus_is_not_taken_for_health(kube, kube_apis, prometheus) -> None:
    """An empty Prometheus answer is 'not measured'; with no score either, the canary rolls back."""
    kube.add(inference_service("Knative"))
    api, core = kube_apis
    prometheus.values = {}
    controller = RolloutController(
        KServeTarget(NAME, NAMESPACE, api=api, core=core),
        health=PrometheusHealth(prometheus.url),
        model_name=NAME,
        sleep=lambda _s: None,
    )
    final = run_rollout(controller)
    assert final.decisions[-1].action == "rollback"
    assert "nothing was measured" in final.decisions[-1].reasons[0]


def test_manual_rollback_from_another_process_ends_the_running_controller(
    kube, kube_apis, prometheus
) -> None:
    kube.add(inference_service("Standard"))
    controller, _, _ = controller_for(kube_apis, prometheus, "healthy")
    other, _, _ = controller_for(kube_apis, prometheus, "healthy")
    state = controller.start(PINNED, steps=STEPS, interval_seconds=INTERVAL, thresholds=Thresholds())
    controller.sleep = lambda _s: other.decide_by_hand("rollback", "operator saw bad answers")

    final = controller.run(state)

    assert final.phase == "rolled_back"
    assert final.decisions[-1].manual and final.decisions[-1].reasons == ("operator saw bad answers",)
    assert kube.get(NAMESPACE, NAME)["spec"] == inference_service("Standard")["spec"]


def test_events_forbidden_leave_the_annotation_as_the_record(kube, kube_apis, prometheus) -> None:
    kube.events_forbidden = True
    kube.add(inference_service("Knative"))
    controller, _, _ = controller_for(kube_apis, prometheus, "healthy")
    final = run_rollout(controller)
    assert final.phase == "promoted" and kube.events == []
    assert kube.get(NAMESPACE, NAME)["metadata"]["annotations"][DECISION_ANNOTATION].startswith("promote")


# --- refusals: one line, nothing patched --------------------------------------------------------


def _start(kube_apis, prometheus):
    controller, _, _ = controller_for(kube_apis, prometheus, "healthy")
    return controller.start(PINNED, steps=STEPS, interval_seconds=INTERVAL, thresholds=Thresholds())


def test_standard_mode_with_canary_traffic_percent_is_refused(kube, kube_apis, prometheus) -> None:
    service = inference_service("Standard")
    service["spec"]["predictor"]["canaryTrafficPercent"] = 10
    kube.add(service)
    with pytest.raises(
        ConfigError, match=r"Standard mode, where KServe ignores spec\.predictor\.canaryTrafficPercent"
    ):
        _start(kube_apis, prometheus)
    assert kube.patches == []


def test_knative_mode_with_spec_canary_is_refused(kube, kube_apis, prometheus) -> None:
    service = inference_service("Knative")
    service["spec"]["canary"] = [{"predictor": {"name": "v2"}, "trafficPercent": 10}]
    kube.add(service)
    with pytest.raises(
        ConfigError, match=r"Knative \(Serverless\) mode, where spec.canary\[\] is not honoured"
    ):
        _start(kube_apis, prometheus)
    assert kube.patches == []


def test_missing_inference_service_is_one_not_found_line(kube, kube_apis, prometheus) -> None:
    with pytest.raises(NotFound, match="InferenceService twinops/twin-llm does not exist"):
        _start(kube_apis, prometheus)
    assert kube.patches == []


def test_a_second_rollout_on_a_running_one_is_refused(kube, kube_apis, prometheus) -> None:
    kube.add(inference_service("Knative"))
    _start(kube_apis, prometheus)
    with pytest.raises(ConfigError, match="a rollout is already running"):
        _start(kube_apis, prometheus)
    assert len(kube.patches) == 1


def test_a_storage_uri_predictor_refuses_a_registry_uri(kube, kube_apis, prometheus) -> None:
    service = inference_service("Standard")
    service["spec"]["predictor"]["model"] = {"modelFormat": {"name": "huggingface"}, "storageUri": "hf://x/y"}
    kube.add(service)
    with pytest.raises(ConfigError, match=r"storageUri, which cannot read models:/twin-llm/7"):
        _start(kube_apis, prometheus)
    assert kube.patches == []
