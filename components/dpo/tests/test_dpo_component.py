"""dpo: the job the component builds keeps DPO's own trainer defaults; bad options are one line.

Training itself runs in the training pipeline's local run (tests/pipelines/test_local_runs.py).
"""

import pytest

from twinops.errors import ConfigError
from twinops.pipelines.components import dpo
from twinops.pipelines.jobs import build_training_job
from twinops.training import DPOJob


def test_max_steps_keeps_the_dpo_learning_rate() -> None:
    default = DPOJob().trainer.learning_rate
    job = build_training_job(DPOJob, {"dataset": "preference-1", "model": "/m"}, max_steps=4)
    assert job.trainer.max_steps == 4 and job.trainer.learning_rate == default


def _run_dpo(settings, artifacts, **inputs) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    dpo.python_func(
        sft_model=artifacts.pointer("Model", "sft", kind="llm", path="runs/sft/r/merged"),
        preference=artifacts.pointer("Dataset", "pref", kind="preference", version_id="preference-1"),
        model=artifacts.new("Model", "model"),
        metrics=artifacts.new("Metrics", "m"),
        report=artifacts.new("Markdown", "r"),
        **inputs,
    )


def test_bad_option_is_one_line(settings, artifacts) -> None:
    with pytest.raises(ConfigError, match="DPOJob option `beta`"):
        _run_dpo(settings, artifacts, options={"beta": -1})


def test_a_trainjob_of_no_nodes_is_one_line_before_training(settings, artifacts) -> None:
    """trainjob sizes the Kubeflow TrainJob (tests/pipelines/test_train_placement.py)."""
    with pytest.raises(ConfigError, match="trainjob `num_nodes` input should be greater than or equal to 1"):
        _run_dpo(settings, artifacts, train_on="trainjob", trainjob={"num_nodes": 0})
