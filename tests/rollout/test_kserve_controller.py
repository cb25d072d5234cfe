"""The canary controller on the InferenceServices the deployment ships, against an API that validates.

No Kubernetes API server can run here: ``cluster`` (conftest.py) is the validating emulator of
tests/support/kube_api.py holding the InferenceServices of each shipped render (kustomize and
Helm, dev and prod, in the deployment mode each sets), answering as the rollout's ServiceAccount
(the render's Role). Every object a patch would produce is checked against KServe's CRD: a canary
KServe would refuse fails here as on a cluster. The golden-set scorer and the health reading are
scripted (they are tested against real servers and a real Prometheus elsewhere); the registry is
an in-memory recorder with the release's semantics. Time is a fake clock that sleeping advances.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from tests.rollout.conftest import NAME, Cluster, running_cluster, stable_address

from twinops.rollout.controller import RolloutController
from twinops.rollout.kserve import KServeTarget
from twinops.rollout.models import PinnedModel
from twinops.rollout.plan import Thresholds
from twinops.rollout.state import Decision, Health, RolloutState

CANARY_URI = "models:/twin-llm/7"
STEPS = (10, 50, 100)
INTERVALS = (30.0, 30.0, 30.0)  # a lease renewal or two per step (it lasts 60 s)
PINNED = PinnedModel(
    uri=CANARY_URI,
    requested_uri="models:/twin-llm@challenger",
    registry_name="twin-llm",
    registry_version="7",
)
STABLE_SCORE = 0.50
# (canary golden score, error rate, p95 seconds); None: not measured.
HEALTHY = (0.49, 0.0, 0.8)
FAILING = (0.49, 0.25, 0.8)
UNMEASURED = (0.49, None, None)


class FakeTime:
    """A clock that only sleeping moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)

    def __call__(self) -> datetime:
        return self.now


class ScriptedHealth:
    def __init__(self, error_rate: float | None, p95: float | None) -> None:
        self.error_rate, self.p95 = error_rate, p95
        self.read_for: list[str] = []

    def read(self, canary, window_seconds: float) -> Health:
        self.read_for.append(canary.workload)
        return Health(error_rate=self.error_rate, p95_latency_s=self.p95, requests=3.0, source="scripted")


class ScriptedScorer:
    def __init__(self, canary_score: float, stable_url: str) -> None:
        self.canary_score, self.stable_url = canary_score, stable_url
        self.urls: list[str] = []
        self.models: list[str] = []

    def __call__(self, url: str, model: str) -> float:
        self.urls.append(url)
        self.models.append(model)
        return STABLE_SCORE if url.startswith(self.stable_url) else self.canary_score


@dataclass
class Registry:
    """The release's registry writes, in memory: idempotent, as MLflow's aliases and tags are."""

    champion: str | None = "6"
    challenger: str | None = "7"
    rejected: dict[str, str] = field(default_factory=dict)
    runs: int = 0
    decisions: list[str] = field(default_factory=list)

    def begin(self, state: RolloutState) -> str:
        self.runs += 1
        return f"run-{self.runs}"

    def record(self, state: RolloutState, decision: Decision) -> None:
        self.decisions.append(decision.action)

    def release(self, state: RolloutState) -> None:
        version = state.registry_version
        if state.phase == "promoted":
            self.champion = version
        elif state.phase == "rolled_back":
            self.rejected[version] = state.last_decision.line()
        if self.challenger == version:
            self.challenger = None


def make_controller(
    cluster: Cluster, scenario, *, registry: Registry, clock: FakeTime, clients=None, holder="a", model=NAME
):
    """A controller of twin-llm as ``model`` (a twin's name on a server of many twins)."""
    score, error_rate, p95 = scenario
    custom, core, coordination = clients or cluster.clients
    target = KServeTarget(
        NAME,
        cluster.namespace,
        api=custom,
        core=core,
        coordination=coordination,
        lease_holder=holder,
        model_name=model,
        clock=clock,
    )
    return RolloutController(
        target,
        health=ScriptedHealth(error_rate, p95),
        scorer=ScriptedScorer(score, stable_address(cluster.namespace)),
        recorder=registry,
        model_name=model,
        sleep=clock.sleep,
        clock=clock,
    )


def start(controller: RolloutController, **thresholds) -> RolloutState:
    return controller.start(PINNED, steps=STEPS, intervals=INTERVALS, thresholds=Thresholds(**thresholds))


def predictor_args(cluster: Cluster) -> list[str]:
    return cluster.isvc()["spec"]["predictor"]["model"]["args"]


def canary_percents(cluster: Cluster) -> list[int]:
    """The canary's traffic in every accepted write, in order (Standard: spec.canary[]; Knative:
    canaryTrafficPercent)."""
    percents = []
    for request in cluster.isvc_writes():
        spec = (request.body or {}).get("spec") or {}
        for canary in spec.get("canary") or []:
            percents.append(canary["trafficPercent"])
        predictor = spec.get("predictor") or {}
        if predictor.get("canaryTrafficPercent") is not None:
            percents.append(predictor["canaryTrafficPercent"])
    return percents


def test_a_healthy_canary_steps_up_and_promotes_the_pinned_version(cluster: Cluster) -> None:
    registry, clock = Registry(), FakeTime()
    controller = make_controller(cluster, HEALTHY, registry=registry, clock=clock)

    state = controller.run(start(controller))

    assert state.phase == "promoted" and state.registry_synced
    assert [d.action for d in state.decisions] == ["start", "step_up", "step_up", "promote"]
    assert cluster.refused() == [] or all(r.method == "GET" for r in cluster.refused())  # the lease's 404
    assert registry.champion == "7" and registry.challenger is None
    spec = cluster.isvc()["spec"]
    assert f"--model_uri={CANARY_URI}" in predictor_args(cluster)  # a restart serves v7, pinned
    if cluster.mode == "Serverless":
        assert canary_percents(cluster) == [10, 50, 100]
        assert "canaryTrafficPercent" not in spec["predictor"]
    else:
        assert canary_percents(cluster) == [10, 50, 100]
        assert "canary" not in spec
        assert spec["predictor"].get("minReplicas") is not None  # the stable's scaling is kept
    # One write per decision (traffic and state together), and one for the registry's sync.
    assert len(cluster.isvc_writes()) == len(state.decisions) + 1
    assert cluster.state()["phase"] == "promoted" and cluster.state()["registry_synced"]
    assert clock.slept and sum(clock.slept) >= sum(INTERVALS)


def test_a_canary_failing_its_gates_is_held_then_rolled_back_and_rejected(cluster: Cluster) -> None:
    registry, clock = Registry(), FakeTime()
    controller = make_controller(cluster, FAILING, registry=registry, clock=clock)

    state = controller.run(start(controller, failure_threshold=2))

    assert [d.action for d in state.decisions] == ["start", "hold", "rollback"]
    assert state.decisions[1].reasons[0] == "failed analysis 1 of 2"
    assert "errors 25.0% > 2.0%" in state.decisions[2].reasons
    assert state.phase == "rolled_back" and registry.rejected.keys() == {"7"} and registry.champion == "6"
    assert max(canary_percents(cluster)) == 10  # never more than the step it failed at
    spec = cluster.isvc()["spec"]
    assert "canary" not in spec and spec["predictor"].get("canaryTrafficPercent") in (None, 0)
    assert CANARY_URI not in " ".join(predictor_args(cluster))


def test_measuring_nothing_is_inconclusive_never_a_pass(cluster: Cluster) -> None:
    registry, clock = Registry(), FakeTime()
    controller = make_controller(cluster, UNMEASURED, registry=registry, clock=clock)

    state = controller.run(start(controller, inconclusive_limit=3))

    assert [d.action for d in state.decisions] == ["start", "hold", "hold", "rollback"]
    assert {d.outcome for d in state.decisions[1:]} == {"inconclusive"}
    assert any("not measured: no error rate" in reason for reason in state.decisions[-1].reasons)
    assert max(canary_percents(cluster)) == 10 and registry.champion == "6"


def test_an_approval_step_waits_for_a_person(knative_cluster: Cluster) -> None:
    cluster, registry, clock = knative_cluster, Registry(), FakeTime()
    controller = make_controller(cluster, HEALTHY, registry=registry, clock=clock)
    state = controller.start(PINNED, steps=STEPS, intervals=INTERVALS, thresholds=Thresholds(), approve_at=50)
    state = controller.step(state)
    assert state.decisions[-1].action == "step_up" and state.percent == 50
    state = controller.step(state)
    assert state.phase == "paused" and state.percent == 50 and cluster.state()["phase"] == "paused"

    approved = controller.decide_by_hand("promote", "looks good to me")  # `twinops rollout promote`

    assert approved.phase == "running" and approved.percent == 100
    assert approved.decisions[-1].manual and approved.decisions[-1].reasons == ("approved: looks good to me",)
    final = controller.run(approved)
    assert final.phase == "promoted" and registry.champion == "7"


def test_knative_canary_splits_with_canary_traffic_percent_and_is_scored_on_its_own_url(
    knative_cluster: Cluster,
) -> None:
    cluster, registry, clock = knative_cluster, Registry(), FakeTime()
    controller = make_controller(cluster, FAILING, registry=registry, clock=clock)
    state = controller.run(start(controller, failure_threshold=1))

    assert state.phase == "rolled_back"
    first = cluster.isvc_writes()[0].body
    assert first["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert first["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert controller.scorer.urls[-1].startswith("http://latest-twin-llm-predictor.")
    assert controller.health.read_for == ["twin-llm-predictor-00002"]
    predictor = cluster.isvc()["spec"]["predictor"]
    # The last rolled-out revision keeps all traffic while the restored spec rolls out.
    assert predictor["canaryTrafficPercent"] == 0 and CANARY_URI not in " ".join(predictor["model"]["args"])


def test_a_manual_decision_during_an_analysis_wins(knative_cluster: Cluster) -> None:
    cluster, registry, clock = knative_cluster, Registry(), FakeTime()
    controller = make_controller(cluster, HEALTHY, registry=registry, clock=clock)
    other = make_controller(cluster, HEALTHY, registry=registry, clock=clock)
    state = start(controller)
    scored = controller.scorer

    def rollback_meanwhile(url: str, model: str) -> float:
        if not other.target.load().finished:
            other.decide_by_hand("rollback", "an operator saw bad answers")
        return scored(url, model)

    controller.scorer = rollback_meanwhile
    final = controller.step(state)

    assert final.phase == "rolled_back" and final.decisions[-1].manual
    assert cluster.state()["phase"] == "rolled_back"
    assert any(r.status == 409 for r in cluster.api.requests)  # the stale patch was refused, not applied
    assert registry.rejected.keys() == {"7"}


# --- crash safety ------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dies (not an exception any code should catch)."""


class CrashAt:
    """Counts the calls through wrapped objects and kills the 'process' before or after call ``at``."""

    def __init__(self, at: int | None = None, when: str = "before") -> None:
        self.at, self.when, self.calls, self.dead = at, when, 0, False

    def wrap(self, obj):
        crash = self

        class Proxy:
            def __getattr__(self, name):
                attribute = getattr(obj, name)
                if not callable(attribute) or name.startswith("_"):
                    return attribute

                def call(*args, **kwargs):
                    if crash.dead:
                        raise Crash
                    crash.calls += 1
                    if crash.calls == crash.at and crash.when == "before":
                        crash.dead = True
                        raise Crash
                    result = attribute(*args, **kwargs)
                    if crash.calls == crash.at:
                        crash.dead = True
                        raise Crash
                    return result

                return call

        return Proxy()


def _run_with_crash(
    cluster: Cluster, scenario, at: int | None, when: str
) -> tuple[RolloutState, Registry, int]:
    """A rollout killed at call ``at``, then a restarted controller (another pod) to the end."""
    registry, clock, crash = Registry(), FakeTime(), CrashAt(at, when)
    custom, core, coordination = cluster.clients
    clients = (crash.wrap(custom), crash.wrap(core), crash.wrap(coordination))
    controller = make_controller(
        cluster, scenario, registry=crash.wrap(registry), clock=clock, clients=clients
    )
    thresholds = {"failure_threshold": 1}
    with contextlib.suppress(Crash):
        controller.run(start(controller, **thresholds))
    calls = crash.calls
    restarted = make_controller(cluster, scenario, registry=registry, clock=clock)
    state = restarted.target.load()
    if state is None:  # died before the first patch: the KFP step is retried and starts again
        state = start(restarted, **thresholds)
    return restarted.run(state), registry, calls


@pytest.mark.parametrize(("scenario", "outcome"), [(HEALTHY, "promoted"), (FAILING, "rolled_back")])
@pytest.mark.slow
def test_a_controller_killed_at_any_call_converges_after_a_restart(scenario, outcome) -> None:
    with running_cluster("dev", "kustomize") as cluster:
        _, _, total = _run_with_crash(cluster, scenario, None, "before")
    assert total > 10
    for at in range(1, total + 1):
        for when in ("before", "after"):
            with running_cluster("dev", "kustomize") as cluster:
                final, registry, _ = _run_with_crash(cluster, scenario, at, when)
                where = f"crash {when} call {at} of {total}"
                assert final.phase == outcome and final.registry_synced, where
                assert cluster.state()["phase"] == outcome and cluster.state()["registry_synced"], where
                spec = cluster.isvc()["spec"]
                assert "canary" not in spec, where
                served = " ".join(spec["predictor"]["model"]["args"])
                if outcome == "promoted":
                    assert registry.champion == "7" and CANARY_URI in served, where
                else:
                    assert registry.rejected.keys() == {"7"} and registry.champion == "6", where
                    assert CANARY_URI not in served, where
                    assert max(canary_percents(cluster)) == 10, where  # never past its last step


# --- one driver --------------------------------------------------------------------------------


def test_two_controllers_racing_step_the_canary_once_per_interval(cluster: Cluster) -> None:
    """The KFP step and the controller Deployment both drive the same rollout: one drives (the
    Lease), the other follows; the canary goes 10 → 50 → 100 → promoted, no step twice."""
    import time

    from twinops.rollout.state import now

    registry = Registry()

    def controller_for(holder: str) -> RolloutController:
        controller = make_controller(cluster, HEALTHY, registry=registry, clock=FakeTime(), holder=holder)
        controller.sleep, controller.clock, controller.target.clock = time.sleep, now, now  # real time
        return controller

    state = controller_for("kfp-step").start(
        PINNED, steps=STEPS, intervals=(0.3, 0.3, 0.3), thresholds=Thresholds()
    )
    results: dict[str, RolloutState] = {}

    def drive(holder: str) -> None:
        results[holder] = controller_for(holder).run(state)

    threads = [threading.Thread(target=drive, args=(holder,)) for holder in ("kfp-step", "deployment")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert {holder: result.phase for holder, result in results.items()} == {
        "kfp-step": "promoted",
        "deployment": "promoted",
    }
    final = cluster.state()
    assert [d["action"] for d in final["decisions"]] == ["start", "step_up", "step_up", "promote"]
    assert canary_percents(cluster) == [10, 50, 100]
    assert registry.decisions.count("promote") == 1


TWINS = "models:/twin-llm/3,models:/twin-llm-ada/5,models:/twin-llm-bo/2"
ADA_V6 = PinnedModel(
    uri="models:/twin-llm-ada/6",
    requested_uri="models:/twin-llm-ada@challenger",
    registry_name="twin-llm-ada",
    registry_version="6",
)


@pytest.mark.parametrize(("overlay", "renderer"), [("dev", "kustomize"), ("prod", "helm")])
def test_one_twins_canary_on_a_server_of_many_twins_changes_only_its_entry(overlay, renderer) -> None:
    """twin-llm serving three twins pinned in its spec: ada's release canaries ada's new version on
    pods that serve the other twins on the very same versions, is scored as ada, and promotes by
    changing ada's entry alone. A twin the spec does not list is refused in one line, unwritten."""
    from twinops.errors import ConfigError

    with running_cluster(overlay, renderer, twins=TWINS) as cluster:
        registry, clock = Registry(champion="5", challenger="6"), FakeTime()
        controller = make_controller(cluster, HEALTHY, registry=registry, clock=clock, model="twin-llm-ada")
        controller.start(ADA_V6, steps=STEPS, intervals=INTERVALS, thresholds=Thresholds())
        # The controller Deployment (--isvc twin-llm, no model name) takes the rollout over: it
        # scores the twin the rollout records, not twin-llm.
        deployment = make_controller(cluster, HEALTHY, registry=registry, clock=clock)
        state = deployment.run(deployment.target.load())
        assert state.phase == "promoted" and registry.champion == "6"
        assert set(deployment.scorer.models) == {"twin-llm-ada"}
        expected = "--twins=models:/twin-llm/3,models:/twin-llm-ada/6,models:/twin-llm-bo/2"
        assert expected in predictor_args(cluster)
        canary_args = []
        for request in cluster.isvc_writes():
            spec = (request.body or {}).get("spec") or {}
            canary_args += [c["predictor"]["model"]["args"] for c in spec.get("canary") or []]
            predictor = (spec.get("predictor") or {}).get("model") or {}
            canary_args += [predictor["args"]] if "args" in predictor else []
        assert canary_args and all(expected in args for args in canary_args)
        assert set(controller.scorer.models) == {"twin-llm-ada"}
        assert cluster.refused() == [] or all(r.method == "GET" for r in cluster.refused())

        writes = len(cluster.isvc_writes())
        other = make_controller(cluster, HEALTHY, registry=Registry(), clock=FakeTime(), model="twin-llm-cy")
        stranger = PinnedModel(
            uri="models:/twin-llm-cy/1", requested_uri="models:/twin-llm-cy/1", registry_name="twin-llm-cy"
        )
        with pytest.raises(ConfigError) as refused:
            other.start(stranger, steps=STEPS, intervals=INTERVALS, thresholds=Thresholds())
        line = str(refused.value)
        assert "not twin-llm-cy" in line and "--twins" in line and len(line.splitlines()) == 1
        assert len(cluster.isvc_writes()) == writes
