"""Evaluation of base, SFT, DPO and GPTQ models side by side on the golden set.

Public API: ``EvaluationJob``, ``ModelSpec``, ``EvaluationReport``, ``evaluate(job, settings)``.
"""

from __future__ import annotations

from twinops.evaluation.job import EvaluationJob, EvaluationReport, ModelScores, ModelSpec

__all__ = ["EvaluationJob", "EvaluationReport", "ModelScores", "ModelSpec", "evaluate"]


def __getattr__(name: str):
    if name == "evaluate":  # deferred: pulls torch, transformers, mlflow
        from twinops.evaluation.evaluate import evaluate

        return evaluate
    raise AttributeError(name)
