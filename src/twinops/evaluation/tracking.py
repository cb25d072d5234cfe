"""MLflow: a comparison run (table, plots, retrieval metrics) with one nested run per model."""

from __future__ import annotations

from pathlib import Path

from twinops.evaluation.job import EvaluationReport
from twinops.settings import Settings

STAGE = "evaluation"


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    import math

    return {key: float(value) for key, value in metrics.items() if not math.isnan(float(value))}


def log_evaluation(report: EvaluationReport, folder: Path, settings: Settings) -> tuple[str, dict[str, str]]:
    """(comparison run id, {model name: run id})."""
    import mlflow

    from twinops.infra.tracking import ensure_experiment

    experiment_id = ensure_experiment(STAGE, settings)
    run_ids: dict[str, str] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluation-{folder.name}") as parent:
        mlflow.set_tags(
            {"twinops.stage": STAGE, "golden_dataset_version": report.golden, "judge": report.judge}
        )
        mlflow.log_params({"questions": report.questions, "models": ",".join(m.name for m in report.models)})
        mlflow.log_metrics(_clean(report.retrieval))
        mlflow.log_metrics(_clean({f"style_classifier_{k}": v for k, v in report.style_classifier.items()}))
        for scores in report.models:
            with mlflow.start_run(experiment_id=experiment_id, run_name=scores.name, nested=True) as child:
                mlflow.set_tags(
                    {
                        "twinops.stage": STAGE,
                        "model_name": scores.name,
                        "golden_dataset_version": report.golden,
                    }
                )
                mlflow.log_params({"model_path": scores.path})
                mlflow.log_metrics(_clean(scores.metrics))
                answers = folder / "answers" / f"{scores.name}.jsonl"
                if answers.exists():
                    mlflow.log_artifact(str(answers), artifact_path="answers")
                run_ids[scores.name] = child.info.run_id
        for name in sorted(report.files):
            mlflow.log_artifact(report.files[name], artifact_path="report")
    return parent.info.run_id, run_ids
