"""The retraining trigger: one run per cool-down, every decision recorded, failures recorded too.

The pipeline runner is injected (monitoring sits below the pipelines): here a recording runner
stands in for ``run_local``/``submit``, which need a KFP run; the test says so by its name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twinops.monitoring.detectors import DriftResult
from twinops.monitoring.retrain import RetrainRequest, RetrainTrigger

DRIFT = [
    DriftResult(
        detector="evidently-mmd",
        space="queries",
        is_drift=True,
        distance=0.3,
        p_val=0.02,
        threshold=0.05,
        batch_size=32,
    )
]


class RecordingRunner:
    """Stands in for the pipeline runner (a real KFP run takes minutes and a cluster or kfp.local)."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[RetrainRequest] = []
        self.fail = fail

    def __call__(self, request: RetrainRequest) -> str:
        self.requests.append(request)
        if self.fail:
            raise RuntimeError("KFP API refused the run\nsecond line")
        return f"run-{len(self.requests)}"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_fires_once_within_the_cooldown_then_again_after_it(tmp_path, clock):
    runner = RecordingRunner()
    trigger = RetrainTrigger(runner, cooldown=timedelta(hours=6), folder=tmp_path, clock=clock)
    first = trigger.on_drift(DRIFT, reference_id="drift-1", texts=["Comment fonctionnent les index ?"])
    trigger.wait()
    clock.now += timedelta(hours=1)
    second = trigger.on_drift(DRIFT, reference_id="drift-1", texts=["encore"])
    assert (first.outcome, second.outcome) == ("started", "cooldown")
    assert second.next_allowed_at == first.at + timedelta(hours=6)
    assert len(runner.requests) == 1
    request = runner.requests[0]
    assert "queries by evidently-mmd" in request.reason and request.reference_id == "drift-1"
    assert (tmp_path / "data" / f"{request.trigger_id}.jsonl").read_text(encoding="utf-8").count("\n") == 1

    clock.now += timedelta(hours=6)
    third = trigger.on_drift(DRIFT, reference_id="drift-1", texts=["again"])
    trigger.wait()
    assert third.outcome == "started" and len(runner.requests) == 2
    outcomes = [(r.outcome, r.run) for r in trigger.records()]
    assert outcomes == [
        ("started", None),
        ("submitted", "run-1"),
        ("cooldown", None),
        ("started", None),
        ("submitted", "run-2"),
    ]


def test_the_cooldown_survives_a_restart(tmp_path, clock):
    RetrainTrigger(RecordingRunner(), cooldown=timedelta(hours=6), folder=tmp_path, clock=clock).on_drift(
        DRIFT, reference_id="r", texts=[]
    )
    runner = RecordingRunner()
    restarted = RetrainTrigger(runner, cooldown=timedelta(hours=6), folder=tmp_path, clock=clock)
    assert restarted.on_drift(DRIFT, reference_id="r", texts=[]).outcome == "cooldown"
    assert runner.requests == []


def test_a_failing_runner_is_recorded_and_the_trigger_goes_on(tmp_path, clock):
    trigger = RetrainTrigger(RecordingRunner(fail=True), cooldown=timedelta(0), folder=tmp_path, clock=clock)
    trigger.on_drift(DRIFT, reference_id="r", texts=["x"])
    trigger.wait()
    failed = [r for r in trigger.records() if r.outcome == "failed"]
    assert len(failed) == 1 and failed[0].error == "KFP API refused the run"
