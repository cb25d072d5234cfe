"""sft: the job the component builds from pipeline parameters; bad options are one line.

Training itself runs in the training pipeline's local run (tests/pipelines/test_local_runs.py).
"""

import pytest

from twinops.errors import ConfigError
from twinops.pipelines.components import sft
from twinops.pipelines.jobs import build_training_job
from twinops.training import SFTJob


def test_max_steps_overrides_only_the_step_count() -> None:
    job = build_training_job(
        SFTJob, {"dataset": "instruction-1", "trainer": {"learning_rate": 1e-3}}, max_steps=3
    )
    assert job.trainer.max_steps == 3 and job.trainer.learning_rate == 1e-3
    assert job.dataset == "instruction-1" and job.progress is False


def test_bad_option_is_one_line_before_training(settings, artifacts) -> None:
    instruction = artifacts.pointer("Dataset", "instruction", kind="instruction", version_id="instruction-1")
    with pytest.raises(ConfigError, match="SFTJob option `bogus` extra inputs are not permitted") as raised:
        sft.python_func(
            instruction=instruction,
            options={"bogus": 1},
            model=artifacts.new("Model", "model"),
            metrics=artifacts.new("Metrics", "m"),
            report=artifacts.new("Markdown", "r"),
        )
    assert "\n" not in str(raised.value)


def test_a_bad_place_to_train_is_one_line_before_training(settings, artifacts) -> None:
    """train_on picks the step's pod or a Kubeflow TrainJob (tests/pipelines/test_train_placement.py)."""
    instruction = artifacts.pointer("Dataset", "instruction", kind="instruction", version_id="instruction-1")
    with pytest.raises(ConfigError, match="train_on='gpu' is not a place to train") as raised:
        sft.python_func(
            instruction=instruction,
            train_on="gpu",
            model=artifacts.new("Model", "model"),
            metrics=artifacts.new("Metrics", "m"),
            report=artifacts.new("Markdown", "r"),
        )
    assert "\n" not in str(raised.value)
