"""Library jobs as the components build them: pipeline parameters merged over ``options``.

Every job model forbids unknown fields; a bad option becomes one ``ConfigError`` line naming the
field, before any work starts. ``max_steps`` (a pipeline parameter) replaces only the trainer's
step count, or with ``epochs`` caps them, and keeps the stage's other trainer defaults (DPO's
learning rate, the reranker's batch size).
"""

from __future__ import annotations

from typing import Any

from twinops.errors import ConfigError, first_problem


def validate_job(job_class: type, fields: dict[str, Any]) -> Any:
    """``job_class`` from ``fields``; the first validation problem as one line."""
    from pydantic import ValidationError

    try:
        return job_class.model_validate(fields)
    except ValidationError as error:
        problem = first_problem(error)
        raise ConfigError(
            f"{job_class.__name__} option `{problem.where or '(job)'}` {problem.message.lower()}: "
            "fix the component options"
        ) from error


def build_training_job(
    job_class: type, fields: dict[str, Any], *, max_steps: int | None, epochs: float | None = None
) -> Any:
    """A training job without a progress bar (no TTY in a pod), ``trainer.max_steps`` replaced.

    With ``epochs`` the run is sized by its data: ``epochs`` passes over the train rows, stopped at
    ``max_steps`` (``trainer.step_cap``; -1: no ceiling).
    """
    job = validate_job(job_class, {"progress": False, **fields})
    if epochs:
        sized = {"max_steps": -1, "num_train_epochs": epochs, "step_cap": max_steps or -1}
        return job.model_copy(update={"trainer": job.trainer.model_copy(update=sized)})
    if max_steps:
        job = job.model_copy(update={"trainer": job.trainer.model_copy(update={"max_steps": max_steps})})
    return job
