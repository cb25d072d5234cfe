"""MLflow: a comparison run (table, plots) with one nested run per model and per ranker.

Each nested run holds its metrics under their one name (``golden_perplexity``, ``golden_mrr``, ...)
and the interval bounds as ``<metric>_ci_low`` / ``<metric>_ci_high``; a model compared with the
baseline also holds ``<metric>_delta`` and its paired interval ``<metric>_delta_ci_low`` / ``_high``.
"""

from __future__ import annotations

import math
from pathlib import Path

from twinops.evaluation.job import EvaluationReport, ModelScores
from twinops.infra.tracking import ensure_experiment
from twinops.settings import Settings

STAGE = "evaluation"


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if not math.isnan(float(value))}


def logged_metrics(scores: ModelScores) -> dict[str, float]:
    """The metrics and their interval bounds, as MLflow gets them."""
    logged = dict(scores.metrics)
    for metric, (low, high) in scores.intervals.items():
        logged[f"{metric}_ci_low"], logged[f"{metric}_ci_high"] = low, high
    for metric, delta in scores.difference.items():
        logged[f"{metric}_delta"] = delta
        logged[f"{metric}_delta_ci_low"], logged[f"{metric}_delta_ci_high"] = scores.difference_ci[metric]
    if scores.seconds is not None:
        logged["seconds"] = scores.seconds
    return _clean(logged)


def log_evaluation(report: EvaluationReport, folder: Path, settings: Settings) -> tuple[str, dict[str, str]]:
    """(comparison run id, {model or ranker name: run id})."""
    import mlflow

    experiment_id = ensure_experiment(STAGE, settings)
    run_ids: dict[str, str] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluation-{folder.name}") as parent:
        mlflow.set_tags(
            {"twinops.stage": STAGE, "golden_dataset_version": report.golden, "judge": report.judge}
        )
        mlflow.log_params(
            {
                "questions": report.questions,
                "answered": report.answered,
                "models": ",".join(m.name for m in report.models),
                "rankers": ",".join(r.name for r in report.retrieval),
                "device": report.device,
            }
        )
        mlflow.log_metrics(_clean({f"style_classifier_{k}": v for k, v in report.style_classifier.items()}))
        for kind, group in (("model", report.models), ("ranker", report.retrieval)):
            for scores in group:
                with mlflow.start_run(
                    experiment_id=experiment_id, run_name=scores.name, nested=True
                ) as child:
                    mlflow.set_tags(
                        {
                            "twinops.stage": STAGE,
                            f"{kind}_name": scores.name,
                            "golden_dataset_version": report.golden,
                            **({"backend": scores.backend} if scores.backend else {}),
                        }
                    )
                    mlflow.log_params({f"{kind}_path": scores.path})
                    mlflow.log_metrics(logged_metrics(scores))
                    answers = folder / "answers" / f"{scores.name}.jsonl"
                    if kind == "model" and answers.exists():
                        mlflow.log_artifact(str(answers), artifact_path="answers")
                    run_ids[scores.name] = child.info.run_id
        for name in sorted(report.files):
            mlflow.log_artifact(report.files[name], artifact_path="report")
    return parent.info.run_id, run_ids
