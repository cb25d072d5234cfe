"""fit-drift-reference: real MongoDB (wire server), a real MLflow store (sqlite) and the bundled
MiniLM. The version register-and-gate reports gets its detectors beside it (a version tag and
artifacts of its run), and `twinops drift fit|serve --reference latest` reads them back instead of
fitting again; a second version trained on the same datasets gets the same reference beside it."""

import json
from pathlib import Path

import pytest

from twinops.cli import main
from twinops.errors import NotFound
from twinops.pipelines.components import fit_drift_reference
from twinops.settings import get_settings

pytestmark = pytest.mark.slow


def _fit(artifacts, version: float, options: dict, tag: str):
    registered = artifacts.new("Metrics", f"registered-{tag}")
    registered.log_metric("twin-llm.version", version)  # as register_and_gate logs it
    reference, report = artifacts.new("Dataset", f"reference-{tag}"), artifacts.new("Markdown", f"r-{tag}")
    reference_id = fit_drift_reference.python_func(
        registered=registered, reference=reference, report=report, options=options
    )
    return reference_id, json.loads(Path(reference.path).read_text()), Path(report.path).read_text()


def test_the_registered_version_gets_its_detectors_and_serving_finds_them(
    champion_lineage, small_options, small_config, artifacts, capsys
) -> None:
    from mlflow import MlflowClient

    drift_settings = get_settings()  # champion_lineage's (MongoDB, MLflow, MiniLM)

    reference_id, pointer, report = _fit(artifacts, 1.0, small_options, "v1")
    assert reference_id.startswith("drift-") and pointer["reference_id"] == reference_id
    assert pointer["model_version"] == "1" and pointer["spaces"] == {
        "queries": 40,
        "answers": 40,
        "chunks": 40,
    }
    folder = drift_settings.home / pointer["path"]
    assert folder == drift_settings.home / "drift" / "references" / reference_id
    assert "evidently-mmd" in report and "twin-llm v1" in report

    client = MlflowClient(drift_settings.mlflow_tracking_uri)
    assert client.get_model_version("twin-llm", "1").tags["drift_reference"] == reference_id
    beside = client.list_artifacts(champion_lineage["run_id"], f"drift/{reference_id}")
    assert "reference.json" in {Path(a.path).name for a in beside}

    # What `drift serve --reference latest` resolves and loads: the saved reference, not a new fit.
    created = (folder / "reference.json").stat().st_mtime
    assert main(["drift", "fit", "--reference", "latest", "--json", "--config", small_config]) == 0
    assert json.loads(capsys.readouterr().out)["reference_id"] == reference_id
    assert (folder / "reference.json").stat().st_mtime == created

    # A retraining on the same datasets registers v2: the same reference goes beside it too.
    run = client.create_run(client.get_run(champion_lineage["run_id"]).info.experiment_id)
    client.create_model_version(
        "twin-llm",
        source=str(drift_settings.home / "model-2"),
        run_id=run.info.run_id,
        tags={"dataset_version_ids": champion_lineage["instruction"]},
    )
    second, pointer, _ = _fit(artifacts, 2.0, small_options, "v2")
    assert second == reference_id and pointer["model_version"] == "2"
    assert client.get_model_version("twin-llm", "2").tags["drift_reference"] == reference_id
    assert "reference.json" in {
        Path(a.path).name for a in client.list_artifacts(run.info.run_id, f"drift/{reference_id}")
    }


def test_metrics_without_a_version_are_one_clear_error(drift_settings, artifacts) -> None:
    registered = artifacts.new("Metrics", "registered")
    with pytest.raises(NotFound, match="wire this step to register_and_gate's metrics"):
        fit_drift_reference.python_func(
            registered=registered,
            reference=artifacts.new("Dataset", "reference"),
            report=artifacts.new("Markdown", "report"),
        )


def test_a_machine_without_the_folder_gets_it_from_the_model_version(
    champion_lineage, small_options, small_config, artifacts, capsys
) -> None:
    """The detector on another volume (or a laptop) downloads what training saved, instead of fitting."""
    import shutil

    home = get_settings().home
    reference_id, pointer, _ = _fit(artifacts, 1.0, small_options, "v1")
    folder = home / pointer["path"]
    fitted = json.loads((folder / "reference.json").read_text())
    shutil.rmtree(folder)

    assert main(["drift", "fit", "--reference", "latest", "--json", "--config", small_config]) == 0
    assert json.loads(capsys.readouterr().out)["reference_id"] == reference_id
    assert json.loads((folder / "reference.json").read_text()) == fitted, "the saved fit, not a new one"
    assert {p.name for p in folder.parent.iterdir()} == {reference_id}, "no staging folder left behind"
