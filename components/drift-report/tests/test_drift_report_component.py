"""drift-report: real MongoDB (wire server), a real MLflow store (sqlite) and the bundled MiniLM.
A planted language shift in the current texts is reported as drift: the evidently HTML is the
step's visualization, the verdicts its metrics and its JSON, and both are logged to MLflow."""

import json
from pathlib import Path

import pytest

from twinops.errors import ConfigError
from twinops.pipelines.components import drift_report
from twinops.settings import get_settings

pytestmark = pytest.mark.slow


def _outputs(artifacts, tag: str):
    return {
        "report": artifacts.new("HTML", f"report-{tag}"),
        "results": artifacts.new("Dataset", f"results-{tag}"),
        "metrics": artifacts.new("Metrics", f"metrics-{tag}"),
    }


def test_a_language_shift_is_drift_in_the_html_the_metrics_and_mlflow(
    champion_lineage, vocabulary, small_options, artifacts
) -> None:
    from mlflow import MlflowClient

    v = vocabulary
    current = get_settings().home / "drift" / "current.jsonl"  # passed relative to TWINOPS_HOME
    current.parent.mkdir(parents=True, exist_ok=True)
    current.write_text(
        "".join(json.dumps({"question": q}) + "\n" for q in v.questions(v.tech[8:14], v.french[:4]))
    )
    outputs = _outputs(artifacts, "fr")
    drift = drift_report.python_func(
        reference="latest", current="drift/current.jsonl", options=small_options, **outputs
    )
    assert drift is True
    html = Path(outputs["report"].path).read_text(encoding="utf-8")
    summary = json.loads(Path(outputs["results"].path).read_text())
    # evidently's report itself (the one logged to MLflow), not a placeholder table.
    assert html == Path(summary["html"][0]).read_text(encoding="utf-8") and "query_language" in html
    assert summary["reference"] == "twin-llm v1 [champion]" and summary["drift"] is True
    metrics = outputs["metrics"].metadata
    assert metrics["drift"] == 1.0 and "queries.evidently-mmd.p_val" in metrics
    assert metrics["queries.share_drifted"] > 0

    client = MlflowClient(get_settings().mlflow_tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["drift"] == 1.0
    assert outputs["results"].metadata["mlflow_run_id"] == summary["mlflow_run_id"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "drift_report")} >= {
        "drift_report/report.html",
        "drift_report/report.json",
    }


def test_a_missing_current_file_is_one_clear_error(champion_lineage, artifacts) -> None:
    with pytest.raises(ConfigError, match=r"--current /nowhere/current\.jsonl does not exist"):
        drift_report.python_func(current="/nowhere/current.jsonl", **_outputs(artifacts, "missing"))
