"""Parsing the plan, reading the deployment mode, and the merge patches that restore a spec."""

from __future__ import annotations

import pytest
from tests.support.kube_api import apply_merge_patch

from twinops.errors import ConfigError
from twinops.rollout.kserve import deployment_mode, merge_patch, with_model_uri
from twinops.rollout.plan import parse_interval, parse_intervals, parse_steps


@pytest.mark.parametrize(
    ("text", "steps"), [("10,25,50,100", (10, 25, 50, 100)), (" 5, 100 ", (5, 100)), ("100", (100,))]
)
def test_steps_parse(text, steps) -> None:
    assert parse_steps(text) == steps


@pytest.mark.parametrize("text", ["", "10,10", "50,25", "0,50", "10,101", "1.5,2", "x"])
def test_bad_steps_are_config_errors(text) -> None:
    with pytest.raises(ConfigError, match="--steps"):
        parse_steps(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300.0), ("30s", 30.0), ("1h30m", 5400.0), ("90", 90.0), ("0s", 0.0), ("250ms", 0.25)],
)
def test_interval_parses(text, seconds) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "5x", "m5", "-1", "nan", "inf", ""])
def test_bad_interval_is_a_config_error(text) -> None:
    with pytest.raises(ConfigError, match="--interval"):
        parse_interval(text)


@pytest.mark.parametrize(
    ("annotation", "status", "mode"),
    [
        ("Serverless", None, "Knative"),
        ("Knative", None, "Knative"),
        ("RawDeployment", None, "Standard"),
        ("Standard", "Knative", "Standard"),  # the annotation is what the user set
        (None, "Serverless", "Knative"),
        (None, None, "Standard"),  # KServe's default
    ],
)
def test_deployment_mode_is_read_from_the_resource(annotation, status, mode) -> None:
    obj = {
        "metadata": {"annotations": {"serving.kserve.io/deploymentMode": annotation} if annotation else {}}
    }
    if status:
        obj["status"] = {"deploymentMode": status}
    assert deployment_mode(obj) == mode


def test_model_mesh_is_refused() -> None:
    obj = {"metadata": {"name": "x", "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}}}
    with pytest.raises(ConfigError, match="ModelMesh"):
        deployment_mode(obj)


def test_merge_patch_turns_one_spec_into_the_other() -> None:
    current = {
        "a": 1,
        "model": {"args": ["--model_uri=new"], "storageUri": "s3://x"},
        "canaryTrafficPercent": 0,
    }
    previous = {"a": 1, "model": {"args": ["--model_uri=old"]}, "minReplicas": 2}
    patch = merge_patch(current, previous)
    assert apply_merge_patch(current, patch) == previous
    assert patch == {
        "canaryTrafficPercent": None,
        "model": {"storageUri": None, "args": ["--model_uri=old"]},
        "minReplicas": 2,
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"args": ["--model_uri=models:/a@champion", "--x"]}, {"args": ["--model_uri=models:/a/3", "--x"]}),
        ({"args": ["--model_uri", "models:/a@champion"]}, {"args": ["--model_uri", "models:/a/3"]}),
    ],
)
def test_the_runtime_argument_carries_the_model(model, expected) -> None:
    assert with_model_uri({"model": model}, "models:/a/3", where="x")["model"] == expected


def test_storage_uri_carries_a_storage_model() -> None:
    predictor = {"model": {"storageUri": "hf://old"}}
    assert with_model_uri(predictor, "s3://b/new", where="x") == {"model": {"storageUri": "s3://b/new"}}
    assert predictor == {"model": {"storageUri": "hf://old"}}  # the input is not changed


def test_the_runtime_argument_refuses_a_storage_uri() -> None:
    with pytest.raises(ConfigError, match="reads registry URIs"):
        with_model_uri({"model": {"args": ["--model_uri=models:/a@champion"]}}, "s3://b/new", where="x")


@pytest.mark.parametrize(
    ("text", "intervals"),
    [("5m", (300.0, 300.0, 300.0)), ("1m,5m,10m", (60.0, 300.0, 600.0)), ("30s, 1m, 1m", (30.0, 60.0, 60.0))],
)
def test_intervals_are_one_for_all_steps_or_one_per_step(text, intervals) -> None:
    assert parse_intervals(text, (10, 50, 100)) == intervals


def test_interval_counts_that_match_no_plan_are_refused() -> None:
    with pytest.raises(ConfigError, match="gives 2 durations for 3 steps"):
        parse_intervals("1m,5m", (10, 50, 100))
