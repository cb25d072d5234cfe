"""train-reranker: the job keeps the reranker's trainer defaults; bad options are one line.

Training itself runs in the training pipeline's local run (tests/pipelines/test_local_runs.py).
"""

import pytest

from twinops.errors import ConfigError
from twinops.pipelines.components import train_reranker
from twinops.pipelines.jobs import build_training_job
from twinops.training import RerankerJob


def test_max_steps_keeps_the_batch_size() -> None:
    default = RerankerJob().trainer.per_device_train_batch_size
    job = build_training_job(RerankerJob, {"dataset": "reranker-1"}, max_steps=2)
    assert job.trainer.max_steps == 2 and job.trainer.per_device_train_batch_size == default


def test_bad_option_is_one_line(settings, artifacts) -> None:
    with pytest.raises(ConfigError, match="RerankerJob option `negatives_per_query`"):
        train_reranker.python_func(
            reranker=artifacts.pointer("Dataset", "rr", kind="reranker", version_id="reranker-1"),
            options={"negatives_per_query": 0},
            model=artifacts.new("Model", "model"),
            metrics=artifacts.new("Metrics", "m"),
            report=artifacts.new("Markdown", "r"),
        )
