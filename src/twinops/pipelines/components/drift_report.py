# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The drift-report component: current data against a registered version's reference, HTML + JSON."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def drift_report(
    report: Output[HTML],
    results: Output[Dataset],
    metrics: Output[Metrics],
    reference: str = "latest",
    current: str = "requests",
    options: dict = {},
) -> bool:
    """Embedding and feature drift of ``current`` against ``reference``, as a KFP visualization.

    Calls ``twinops.monitoring.report.run_drift_report`` (what ``twinops drift report`` runs):
    the reference's saved detectors (fitted when missing, as ``fit-drift-reference`` fits them)
    on the embedded current texts per space, and evidently's feature drift report on the query
    and document columns. ``report.html`` and ``report.json`` are logged to MLflow (experiment
    ``twinops-drift``) with the scalars; the HTML is also this step's visualization and the
    scalars its metrics.

    Args:
        reference: ``latest`` (twin-llm's champion), a twin-llm version number, or a dataset
            version id.
        current: A JSONL of texts (absolute, or relative to TWINOPS_HOME, the volume every step
            mounts), ``requests`` (the newest logged RAG requests) or a dataset version id.
        options: ``DriftConfig`` fields replacing the project's defaults (``p_val``,
            ``evidently_methods``, ``drift_share``, ...).
        report: The evidently HTML report (queries; documents when only those are compared).
        results: The report JSON (``DriftReportSummary``: every detector's verdict, the feature
            tables, the MLflow run).
        metrics: ``drift`` (1 = drift), each detector's distance and p-value per space, each
            feature table's share of drifted columns.

    Returns:
        True when any detector or feature table drifted.
    """
    import shutil
    from pathlib import Path

    from twinops.features.embedding import open_embedder
    from twinops.monitoring.config import load_drift_config
    from twinops.monitoring.reference import open_reference, resolve_reference
    from twinops.monitoring.report import load_current, report_metrics, run_drift_report
    from twinops.pipelines import artifacts

    settings = artifacts.component_settings()
    config = load_drift_config(None, **dict(options))
    data = resolve_reference(settings, reference)
    if current.endswith((".jsonl", ".json")):
        current = str(settings.under_home(current))
    current_data = load_current(settings, current, limit=config.max_reference)
    embedder = open_embedder(settings)
    fitted = open_reference(settings, data, embedder, config)
    summary = run_drift_report(
        settings, fitted, current_data, embedder, config, html_out=Path(report.path), log_mlflow=True
    )
    scalars = report_metrics(summary)
    if not summary.html:  # no space in common with the reference: the verdicts as a table
        artifacts.copy_report(report, None, title="Drift", fallback=scalars)
    Path(results.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(summary.json_path, results.path)
    results.metadata.update(
        {
            "reference_id": summary.reference_id,
            "current": summary.current,
            "mlflow_run_id": summary.mlflow_run_id,
        }
    )
    artifacts.log_metrics(metrics, scalars)
    return summary.drift
