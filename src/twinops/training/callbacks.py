"""Trainer callbacks: a rich progress bar showing the loss, and metrics streamed to MLflow."""

from __future__ import annotations

from transformers import TrainerCallback

from twinops.training.tracking import log_metrics


class RichProgressCallback(TrainerCallback):
    """One rich bar per training run (on stderr, so ``--json`` stays clean) with the latest loss.

    Replaces the trainer's tqdm bar (the jobs set ``disable_tqdm``); only the main process draws.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self._bar = None
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from twinops.cli.common import progress

        self._bar = progress()
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=state.max_steps or None)

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._bar is not None and logs and "loss" in logs:
            self._bar.update(self._task, description=f"{self.description} loss={float(logs['loss']):.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class MlflowMetricsCallback(TrainerCallback):
    """Send every trainer log (loss, lr, grad norm, DPO rewards, ...) to the active MLflow run.

    Used instead of ``report_to="mlflow"`` so the run is the one twinops opened (with its params,
    dataset inputs and environment), not a second one transformers starts on its own.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            log_metrics(logs, step=state.global_step)
