"""One definition for each pipeline parameter and default (issue 15, item 3).

The pipelines' signatures come from ``FeatureParams`` and ``TrainingParams``; the run config holds
only what a local run sets differently, so the two can never disagree again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twinops.pipelines.params import FeatureParams, TrainingParams
from twinops.pipelines.registry import get_pipeline

pytestmark = pytest.mark.slow  # compiles the KFP pipelines

ROOT = Path(__file__).resolve().parents[2]
RUN_CONFIG = ROOT / "configs" / "run" / "local.yaml"
ASK_KEY = "ask"  # the run config's question for the served twin, not a pipeline parameter


def _defaults(name: str) -> dict:
    return {key: spec.default for key, spec in get_pipeline(name).component_spec.inputs.items()}


def test_pipeline_parameters_are_the_models_fields_with_their_defaults() -> None:
    feature = {name: field.default for name, field in FeatureParams.model_fields.items()}
    training = {name: field.default for name, field in TrainingParams.model_fields.items()}
    assert _defaults("feature_pipeline") == feature
    assert _defaults("training_pipeline") == {**training, "features_version": ""}
    assert _defaults("twin_pipeline") == {**feature, **training}


def test_every_parameter_has_a_description() -> None:
    for name in ("feature_pipeline", "training_pipeline", "twin_pipeline"):
        inputs = get_pipeline(name).component_spec.inputs
        assert all(spec.description for spec in inputs.values()), name


def test_run_config_only_sets_parameters_and_never_repeats_a_default() -> None:
    config = yaml.safe_load(RUN_CONFIG.read_text(encoding="utf-8")) or {}
    defaults = _defaults("twin_pipeline")
    unknown = set(config) - set(defaults) - {ASK_KEY}
    assert not unknown, f"{RUN_CONFIG} sets {unknown}, which twin_pipeline does not take"
    repeated = {key for key in set(config) & set(defaults) if config[key] == defaults[key]}
    assert not repeated, f"{RUN_CONFIG} repeats the default of {repeated}: drop them from the file"


def test_local_run_sizes_are_the_defaults() -> None:
    """`make run` runs on the defaults: small enough for 2 CPU cores."""
    defaults = _defaults("twin_pipeline")
    assert all(defaults[f"{stage}_max_steps"] <= 60 for stage in ("dapt", "sft", "dpo"))
    assert 0 < defaults["eval_max_questions"] <= 16 and 0 < defaults["max_chunks"] <= 64
