"""Trainer callbacks: progress events with the loss (the Face draws them), metrics streamed to MLflow."""

from __future__ import annotations

from transformers import TrainerCallback

from twinops.domain.progress import report
from twinops.infra.tracking import log_metrics


class TrainerProgressCallback(TrainerCallback):
    """Reports ``(description, global step, max steps, "loss=…")`` through ``twinops.domain.progress``.

    Replaces the trainer's tqdm bar (the jobs set ``disable_tqdm``); only the main process reports.
    Nothing is drawn here: the CLI installs a reporter that renders a bar, a pipeline pod none.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self._note = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            report(self.description, 0, state.max_steps or None)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            report(self.description, state.global_step, state.max_steps or None, self._note)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            self._note = f"loss={float(logs['loss']):.4f}"
            report(self.description, state.global_step, state.max_steps or None, self._note)


class MlflowMetricsCallback(TrainerCallback):
    """Send every trainer log (loss, lr, grad norm, DPO rewards, ...) to the active MLflow run.

    Used instead of ``report_to="mlflow"`` so the run is the one twinops opened (with its params,
    dataset inputs and environment), not a second one transformers starts on its own.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            log_metrics(logs, step=state.global_step)
