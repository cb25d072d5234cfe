"""build-datasets: parameters map onto the DatasetJob; bad options are one line before any work.

Building from a real features run happens in the training pipeline's local run
(tests/pipelines/test_local_runs.py).
"""

import pytest

from twinops.datasets.jobs import DatasetJob
from twinops.errors import ConfigError
from twinops.pipelines.components import build_datasets
from twinops.pipelines.jobs import validate_job


def _outputs(artifacts) -> dict:
    names = {
        "instruction": "Dataset",
        "preference": "Dataset",
        "golden": "Dataset",
        "reranker": "Dataset",
        "metrics": "Metrics",
        "report": "Markdown",
    }
    return {name: artifacts.new(kind, name) for name, kind in names.items()}


def test_parameters_are_dataset_job_fields() -> None:
    job = validate_job(DatasetJob, {"author": "Ada Quill", "features_version": "features-1", "max_chunks": 8})
    assert (job.author, job.features_version, job.max_chunks) == ("Ada Quill", "features-1", 8)


def test_unknown_generator_is_one_line(settings, artifacts) -> None:
    with pytest.raises(ConfigError, match="DatasetJob option `generator`") as raised:
        build_datasets.python_func(options={"generator": "nope"}, **_outputs(artifacts))
    assert "\n" not in str(raised.value)
