"""Moved to ``twinops.infra.tracking`` (floor 1), so datasets and evaluation log without importing
training. Kept importable from here for the modules that have not switched yet; import from
``twinops.infra.tracking`` in new code."""

from twinops.infra.tracking import (
    ensure_experiment,
    experiment_name,
    log_dataset_input,
    log_json,
    log_metrics,
    tracked_run,
)

__all__ = [
    "ensure_experiment",
    "experiment_name",
    "log_dataset_input",
    "log_json",
    "log_metrics",
    "tracked_run",
]
