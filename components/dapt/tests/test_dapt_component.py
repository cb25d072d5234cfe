"""dapt: the job the component builds from pipeline parameters (sized by its data); bad options are one line.

Training itself runs in the training pipeline's local run (tests/pipelines/test_local_runs.py).
"""

import pytest

from twinops.errors import ConfigError
from twinops.pipelines.components import dapt
from twinops.pipelines.jobs import build_training_job
from twinops.training import DAPTJob


def test_epochs_size_the_run_and_max_steps_caps_it() -> None:
    job = build_training_job(
        DAPTJob, {"dataset": "instruction-1", "trainer": {"learning_rate": 1e-3}}, max_steps=30, epochs=3
    )
    trainer = job.trainer
    assert (trainer.max_steps, trainer.num_train_epochs, trainer.step_cap) == (-1, 3, 30)
    assert trainer.learning_rate == 1e-3 and job.progress is False


def test_bad_option_is_one_line_before_training(settings, artifacts) -> None:
    instruction = artifacts.pointer("Dataset", "instruction", kind="instruction", version_id="instruction-1")
    with pytest.raises(ConfigError, match="DAPTJob option `bogus` extra inputs are not permitted") as raised:
        dapt.python_func(
            instruction=instruction,
            options={"bogus": 1},
            model=artifacts.new("Model", "model"),
            metrics=artifacts.new("Metrics", "m"),
            report=artifacts.new("Markdown", "r"),
        )
    assert "\n" not in str(raised.value)
