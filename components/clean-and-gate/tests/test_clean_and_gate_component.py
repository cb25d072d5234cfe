"""clean-and-gate: the component function on warehouse documents (real MongoDB, Qdrant local mode)."""

import json
from pathlib import Path

import pytest

from twinops.errors import NotFound
from twinops.features.results import GateResult
from twinops.pipelines.components import clean_and_gate


def _outputs(artifacts):
    return {
        "gate": artifacts.new("Dataset", "gate"),
        "metrics": artifacts.new("Metrics", "metrics"),
        "gate_report": artifacts.new("HTML", "gate_report"),
    }


def test_gate_result_is_written_for_the_next_step(warehouse, artifacts) -> None:
    crawl = artifacts.pointer("Dataset", "crawl", kind="crawl", run_id="etl-1")
    outputs = _outputs(artifacts)
    kept = clean_and_gate.python_func(author="Ada Quill", crawl=crawl, **outputs)
    gate = GateResult.load(Path(outputs["gate"].path))  # what chunk-embed-load reads back
    assert kept == gate.counts.kept == 2
    assert outputs["metrics"].metadata["kept"] == 2.0
    assert outputs["gate"].metadata["crawl_run_id"] == "etl-1"
    assert "<table>" in Path(outputs["gate_report"].path).read_text()


def test_an_input_that_is_not_a_pointer_is_one_line(warehouse, artifacts) -> None:
    crawl = artifacts.new("Dataset", "crawl")
    Path(crawl.path).write_text(json.dumps({"something": "else"}))
    with pytest.raises(NotFound, match="not a twinops pointer") as raised:
        clean_and_gate.python_func(author="Ada Quill", crawl=crawl, **_outputs(artifacts))
    assert "\n" not in str(raised.value)
