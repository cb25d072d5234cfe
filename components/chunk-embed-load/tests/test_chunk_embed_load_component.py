"""chunk-embed-load: from a gate result to Qdrant (local mode) and a features DatasetVersion."""

import json
from pathlib import Path

import pytest

from twinops.pipelines.components import chunk_embed_load


@pytest.mark.slow
def test_features_pointer_and_report(gate_artifact, warehouse, artifacts) -> None:
    features = artifacts.new("Dataset", "features")
    metrics = artifacts.new("Metrics", "metrics")
    report = artifacts.new("HTML", "report")
    version_id = chunk_embed_load.python_func(
        author="Ada Quill", gate=gate_artifact, features=features, metrics=metrics, report=report
    )
    pointer = json.loads(Path(features.path).read_text())
    assert pointer["version_id"] == version_id and version_id.startswith("features-")
    folder = warehouse.home / pointer["path"]
    assert (folder / "chunks.jsonl").is_file()  # contract 2
    assert metrics.metadata["chunks_total"] >= 2.0
    assert Path(report.path).read_text().lstrip().lower().startswith("<!doctype html")
