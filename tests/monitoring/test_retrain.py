"""The retraining trigger: one run per cool-down, every decision recorded, failures recorded too.

The pipeline runner is injected (monitoring sits below the pipelines): here a recording runner
stands in for ``run_local``/``submit``, which need a KFP run; the test says so by its name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.support.kfp_client import kfp_api  # noqa: F401 - the recording kfp.Client's fixture

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


DRIFTED_TEXTS = ["Comment fonctionnent les index ?", "Qu'as-tu écrit sur Qdrant ?"]


def _outcomes_of_one_drift(runner, settings, clock) -> list[tuple[str, str | None]]:
    """One drift event of ``DRIFTED_TEXTS`` through a trigger with ``runner``: its records' outcomes."""
    trigger = RetrainTrigger(runner, cooldown=timedelta(hours=6), folder=settings.home / "drift", clock=clock)
    trigger.on_drift(DRIFT, reference_id="drift-1", texts=DRIFTED_TEXTS)
    trigger.wait()
    return [(record.outcome, record.run) for record in trigger.records()]


@pytest.mark.slow
def test_the_drifted_texts_reach_the_twin_pipeline_as_dataset_queries(settings, clock, monkeypatch):
    """`drift serve --retrain local`'s runner, up to the pipeline's door.

    ``run_local`` is replaced at the boundary (a twin pipeline run takes tens of minutes on two
    cores); what it receives is then checked against the real twin_pipeline signature and the
    real DatasetJob, and tests/datasets/test_queries.py shows the datasets step consuming the file.
    """
    import json

    from twinops.cli.drift import Retrain, _runner
    from twinops.datasets.jobs import DatasetJob
    from twinops.datasets.queries import read_queries
    from twinops.pipelines import local
    from twinops.pipelines.params import coerce
    from twinops.pipelines.registry import get_pipeline

    params_file = settings.home.parent / "run.yaml"
    params_file.write_text('dataset_options: {"generator": "extractive"}\nask: "Anything?"\n')
    started: list[dict[str, str]] = []
    finished = SimpleNamespace(run_dir="/runs/1")
    monkeypatch.setattr(
        local, "run_local", lambda name, raw, _settings: started.append({"name": name, **raw}) or finished
    )
    runner = _runner(Retrain.local, pipeline="twin", params_file=params_file, kfp_host=None)
    assert _outcomes_of_one_drift(runner, settings, clock) == [("started", None), ("submitted", "/runs/1")]
    assert [run.pop("name") for run in started] == ["twin_pipeline"]
    options = json.loads(started[0]["dataset_options"])
    assert options["generator"] == "extractive", "the run config's own options are kept"
    assert not Path(options["queries"]).is_absolute(), "relative to TWINOPS_HOME, the shared volume"
    job = DatasetJob.model_validate(coerce(get_pipeline("twin_pipeline"), started[0])["dataset_options"])
    assert read_queries(settings.home / job.queries) == DRIFTED_TEXTS


@pytest.mark.slow
def test_drift_retrain_kfp_submits_the_twin_pipeline_to_kfp(settings, clock, monkeypatch, kfp_api):  # noqa: F811 - the imported fixture
    """`drift serve --retrain kfp`'s runner through ``pipelines.submit`` to ``kfp.Client``: the
    stand-in binds every call to the real kfp 2.17 signature (no KFP API server here), so what the
    detector submits is what kfp would accept; the drifted texts ride in the run's parameters."""

    from tests.support.kfp_client import RecordingClient

    from twinops.cli.drift import Retrain, _runner
    from twinops.datasets.jobs import DatasetJob
    from twinops.datasets.queries import read_queries

    host = kfp_api(multi_user=False)
    monkeypatch.setattr("kfp.Client", RecordingClient)
    params_file = settings.home.parent / "run.yaml"
    params_file.write_text('dataset_options: {"generator": "extractive"}\n')
    runner = _runner(Retrain.kfp, pipeline="twin", params_file=params_file, kfp_host=host)
    assert _outcomes_of_one_drift(runner, settings, clock) == [("started", None), ("submitted", "r-1")]
    uploaded = RecordingClient.call("upload_pipeline")
    assert Path(uploaded["pipeline_package_path"]).name == "twin_pipeline.yaml"
    run = RecordingClient.call("run_pipeline")
    assert run["version_id"] == "v-1" and run["experiment_id"] == "e-1"
    options = run["params"]["dataset_options"]  # coerced to the pipeline's type, as kfp sends it
    assert options["generator"] == "extractive", "the run config's own options are kept"
    assert not Path(options["queries"]).is_absolute(), "relative to TWINOPS_HOME, the shared volume"
    job = DatasetJob.model_validate(options)
    assert read_queries(settings.home / job.queries) == DRIFTED_TEXTS


def test_drift_retrain_kfp_without_a_host_is_refused_up_front(settings):
    from twinops.cli.drift import Retrain, _runner
    from twinops.errors import ConfigError

    with pytest.raises(ConfigError, match="--retrain kfp needs --kfp-host"):
        _runner(Retrain.kfp, pipeline="twin", params_file=None, kfp_host=None)


def test_a_pipeline_that_builds_no_datasets_is_refused_up_front(settings):
    from twinops.cli.drift import Retrain, _runner
    from twinops.errors import ConfigError

    with pytest.raises(ConfigError, match="feature_pipeline builds no datasets"):
        _runner(Retrain.local, pipeline="feature", params_file=None, kfp_host=None)


def test_with_new_data_rejects_options_that_are_not_a_mapping(tmp_path):
    import json

    from twinops.errors import ConfigError
    from twinops.monitoring.retrain import with_new_data

    request = RetrainRequest(
        trigger_id="t", reason="r", reference_id="d", results=DRIFT, data_path="/x.jsonl"
    )
    assert with_new_data({"author": "Ada"}, request, tmp_path)["dataset_options"] == '{"queries": "/x.jsonl"}'
    # Without options of the run's own, the pipeline's defaults are kept beside the queries.
    defaults = {"budget": "2m", "paraphrased_questions": "data/demo-questions.jsonl"}
    kept = with_new_data({"author": "Ada"}, request, tmp_path, default_options=defaults)
    assert json.loads(kept["dataset_options"]) == {**defaults, "queries": "/x.jsonl"}
    given = with_new_data({"dataset_options": '{"budget": "0"}'}, request, tmp_path, default_options=defaults)
    assert json.loads(given["dataset_options"]) == {"budget": "0", "queries": "/x.jsonl"}
    with pytest.raises(ConfigError, match="must be a mapping of DatasetJob fields"):
        with_new_data({"dataset_options": "[1]"}, request, tmp_path)
