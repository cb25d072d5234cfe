"""Parameter conversion and the pointer artifacts components hand each other."""

import json
from pathlib import Path

import pytest
from kfp import dsl

from twinops.errors import ConfigError, NotFound
from twinops.pipelines import artifacts, params
from twinops.pipelines.registry import canonical_name, get_pipeline


def test_names_are_forgiving_but_exact() -> None:
    assert canonical_name("twin-pipeline") == canonical_name("twin") == "twin_pipeline"


@pytest.mark.slow
def test_params_convert_to_declared_types() -> None:
    pipeline = get_pipeline("twin_pipeline")
    raw = {
        "sources": "a, b",
        "max_chunks": "3",
        "feature_options": '{"full": true}',
        "author": "Ada",
        "gate": "{}",
    }
    converted = params.coerce(pipeline, raw)
    assert converted["sources"] == ["a", "b"] and converted["max_chunks"] == 3
    assert converted["feature_options"] == {"full": True}
    assert params.coerce(pipeline, {"sources": '["x"]'})["sources"] == ["x"]
    with pytest.raises(ConfigError, match="JSON object"):
        params.coerce(pipeline, {"gate": "[1]"})


def test_pointer_round_trip(settings, tmp_path: Path) -> None:
    folder = settings.home / "runs" / "sft" / "r1" / "merged"
    model = dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={})
    pointer = artifacts.write_pointer(model, kind="llm", path=folder, settings=settings, run="r1")
    assert pointer["path"] == "runs/sft/r1/merged"  # relative: resolves on any mount of TWINOPS_HOME
    assert model.metadata["run"] == "r1"
    assert artifacts.pointer_path(artifacts.read_pointer(model), settings) == folder


def test_not_a_pointer_is_one_line(tmp_path: Path) -> None:
    dataset = dsl.Dataset(name="d", uri=str(tmp_path / "d"), metadata={})
    Path(dataset.path).write_text(json.dumps({"rows": 3}))
    with pytest.raises(NotFound, match="not a twinops pointer"):
        artifacts.read_pointer(dataset)


def test_metrics_are_flattened_numbers() -> None:
    metrics = dsl.Metrics(name="m", uri="/tmp/m", metadata={})
    logged = artifacts.log_metrics(
        metrics, {"a": 1, "b": {"c": 2.5, "d": "text"}, "e": True, "f": float("nan")}
    )
    assert logged == {"a": 1.0, "b.c": 2.5, "e": 1.0}
    assert metrics.metadata == logged
