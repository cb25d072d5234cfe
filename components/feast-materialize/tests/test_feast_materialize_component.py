"""feast-materialize: the component function against the real feature state store (MongoDB).

The full path (rows in Feast's SQLite online store) runs in the feature pipeline's local run
(tests/pipelines/test_local_runs.py); here the step's wiring on a warehouse with no features yet.
"""

import json
from pathlib import Path

from twinops.pipelines.components import feast_materialize


def test_passes_the_version_on_and_reports(model_settings, artifacts) -> None:
    features = artifacts.pointer("Dataset", "features", kind="features", version_id="features-0123", path="x")
    metrics, report = artifacts.new("Metrics", "metrics"), artifacts.new("Markdown", "report")
    version_id = feast_materialize.python_func(features=features, metrics=metrics, report=report)
    assert version_id == json.loads(Path(features.path).read_text())["version_id"] == "features-0123"
    assert metrics.metadata["documents"] == 0.0  # nothing kept yet: nothing to materialize
    assert "features-0123" in Path(report.path).read_text()
