"""evaluate: the EvaluationJob the component builds from its inputs; bad options are one line.

Scoring a trained twin happens in the training pipeline's local run
(tests/pipelines/test_local_runs.py).
"""

import pytest

from twinops.errors import ConfigError
from twinops.pipelines.components import evaluate


def test_bad_option_is_one_line(settings, artifacts) -> None:
    inputs = {
        "model": artifacts.pointer("Model", "model", kind="llm-gptq", path="runs/gptq/r-w4g64"),
        "sft_model": artifacts.pointer("Model", "sft", kind="llm", path="runs/sft/r/merged"),
        "dpo_model": artifacts.pointer("Model", "dpo", kind="llm", path="runs/dpo/r/merged"),
        "golden": artifacts.pointer("Dataset", "golden", kind="golden", version_id="golden-1"),
        "preference": artifacts.pointer("Dataset", "pref", kind="preference", version_id="preference-1"),
        "reranker_model": artifacts.pointer("Model", "rr", kind="reranker", path="runs/reranker/r"),
    }
    outputs = {
        "evaluation": artifacts.new("Dataset", "evaluation"),
        "metrics": artifacts.new("Metrics", "metrics"),
        "report": artifacts.new("HTML", "report"),
    }
    with pytest.raises(ConfigError, match="EvaluationJob option `retrieval_k`") as raised:
        evaluate.python_func(**inputs, **outputs, compare=False, options={"retrieval_k": 0})
    assert "\n" not in str(raised.value)
