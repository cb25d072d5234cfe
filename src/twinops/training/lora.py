"""The LoRA run both SFT and DPO follow: load data and model, train with TRL, evaluate, save the
adapter, merge it into a full model, track everything in MLflow, publish the run folder.

Runs unchanged under ``torchrun`` with any number of ranks (``twinops.training.distributed``): the TRL
trainers use accelerate, only rank 0 writes folders and talks to MLflow, and the other ranks wait for
it to publish the run before they return.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from transformers import PrinterCallback

from twinops.domain.versions import DatasetKind
from twinops.errors import ConfigError
from twinops.infra.tracking import experiment_name, log_dataset_input, log_json, log_metrics, tracked_run
from twinops.settings import Settings
from twinops.training.adapters import shared_adapter
from twinops.training.callbacks import MlflowMetricsCallback, TrainerProgressCallback
from twinops.training.config import DAPTJob, DPOJob, SFTJob
from twinops.training.data import LoadedDataset, capped, load_dataset_version
from twinops.training.distributed import wait_for_everyone
from twinops.training.runs import (
    RESULT_FILE,
    TrainResult,
    final_loss,
    is_main_process,
    load_trainable_lm,
    plan_run_dir,
    publish,
    quiet_libraries,
    staging_dir,
)

# build_trainer(model, tokenizer, *, train, test, output_dir, callbacks) -> a TRL trainer
TrainerFactory = Callable[..., Any]
# rows(split, tokenizer) -> the rows the trainer takes from a dataset split
RowsFactory = Callable[[Any, Any], Any]


def columns(*names: str) -> RowsFactory:
    """Rows as they are, with only the ``names`` columns (SFT's and DPO's)."""
    return lambda split, _tokenizer: split.select_columns(list(names))


def run_lora_stage(
    job: DAPTJob | SFTJob | DPOJob,
    settings: Settings,
    *,
    start_model: str,
    kind: DatasetKind,
    rows: RowsFactory,
    build_trainer: TrainerFactory,
    derive_metrics: Callable[[dict[str, float]], dict[str, float]] = lambda metrics: metrics,
    extra_eval: Callable[..., dict[str, float]] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``start_model`` with the ``kind`` dataset ``job.dataset``; merge it.

    ``rows(split, tokenizer)`` turns each split into what the trainer takes; ``extra_eval(model,
    tokenizer, test)`` adds stage-specific metrics computed after training.
    """
    import torch

    quiet_libraries()
    data = load_dataset_version(job.dataset, kind, settings)

    run_name, final = plan_run_dir(job, settings, (start_model, data.version.id))
    main = is_main_process()
    staging = _staging_for(final, main=main)
    dtype = "bfloat16" if job.trainer.bf16 else "float32"
    model, tokenizer = load_trainable_lm(start_model, dtype=dtype)
    train, test = _splits(job, data, rows, tokenizer)
    torch.manual_seed(job.trainer.seed)

    callbacks: list[Any] = [MlflowMetricsCallback()]
    if job.progress:
        callbacks.append(TrainerProgressCallback(f"{job.stage} {run_name}"))
    params = {
        "job": job.model_dump(mode="json"),
        "start_model": start_model,
        "dataset_version_id": data.version.id,
    }
    tracking = (
        tracked_run(
            job.stage,
            settings,
            run_name=run_name,
            params=params,
            tags={"dataset_version_ids": data.version.id, "start_model": start_model},
        )
        if main
        else contextlib.nullcontext(None)
    )
    try:
        with tracking as run_id:
            if main:
                log_dataset_input(data.version, train, "train")
                if test is not None:
                    log_dataset_input(data.version, test, "test")
            trainer = _build(
                build_trainer, job, start_model, model, tokenizer, train, test, staging, callbacks
            )
            # With tqdm disabled the Trainer prints raw log dicts on stdout; the rich bar replaces them.
            trainer.remove_callback(PrinterCallback)
            output = trainer.train()
            metrics: dict[str, float] = {"train_loss": float(output.training_loss)}
            last = final_loss(trainer.state.log_history)
            if last is not None:
                metrics["final_loss"] = last
            if test is not None:
                evaluated = trainer.evaluate(eval_dataset=test)
                metrics.update({k: float(v) for k, v in evaluated.items() if isinstance(v, int | float)})
            if extra_eval is not None and test is not None:
                metrics.update(extra_eval(trainer.model, tokenizer, test))
            metrics = derive_metrics(metrics)
            if not main:
                return _once_published(
                    _result(
                        job,
                        run_name,
                        final,
                        start_model=start_model,
                        dataset_id=data.version.id,
                        metrics=metrics,
                        trainer=trainer,
                        run_id=None,
                    )
                )
            log_metrics(metrics)
            _save_adapter_and_merge(trainer, tokenizer, staging)
            on_base = shared_adapter(start_model, staging / "adapter", staging, final_dir=final)
            result = _result(
                job,
                run_name,
                final,
                start_model=start_model,
                dataset_id=data.version.id,
                metrics=metrics,
                trainer=trainer,
                run_id=run_id,
            ).model_copy(
                update={
                    "shared_adapter_dir": on_base.adapter_dir,
                    "shared_base": on_base.base_model,
                    "shared_adapter_missing": on_base.missing,
                }
            )
            (staging / "job.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
            (staging / RESULT_FILE).write_text(result.model_dump_json(indent=2))
            _log_run_artifacts(staging)
            log_json(result.model_dump(mode="json"), RESULT_FILE)
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, final)
    return _once_published(result)


def _splits(job, data: LoadedDataset, rows: RowsFactory, tokenizer) -> tuple[Any, Any]:
    """(train, test or None) as the trainer takes them, capped as the job says."""
    train = rows(capped(data.train, job.trainer.max_train_samples), tokenizer)
    if not len(train):
        raise ConfigError(
            f"dataset version {data.version.id} gives {job.stage} nothing to train on (its train split "
            "is too short): rebuild it with more chunks (`twinops datasets build`)"
        )
    test = capped(data.test, job.trainer.max_eval_samples)
    test = rows(test, tokenizer) if test is not None and len(test) else None
    return train, (test if test is not None and len(test) else None)


def _staging_for(final: Path, *, main: bool) -> Path:
    """Rank 0 (re)makes the staging folder; every rank waits for it before writing into it."""
    staging = staging_dir(final) if main else final.with_name(final.name + ".partial")
    wait_for_everyone()
    return staging


def _once_published(result: TrainResult) -> TrainResult:
    """``result`` once rank 0 has saved, merged, logged and published the run (a barrier)."""
    wait_for_everyone()
    return result


def _build(build_trainer, job, start_model, model, tokenizer, train, test, staging, callbacks):  # noqa: PLR0917
    """The TRL trainer; LoRA target names that match no layer of the model become one line."""
    from peft.utils.error import NoMatchingPeftModuleError

    try:
        return build_trainer(
            model, tokenizer, train=train, test=test, output_dir=staging / "trainer", callbacks=callbacks
        )
    except NoMatchingPeftModuleError as error:
        raise ConfigError(
            f"LoRA target_modules {job.lora.target_modules} match no layer of {start_model}: set "
            "`lora.target_modules` to its linear layer names (e.g. q_proj, v_proj) or ['all-linear']"
        ) from error


def _save_adapter_and_merge(trainer: Any, tokenizer: Any, staging: Path) -> None:
    """``adapter/`` (the LoRA weights + tokenizer) and ``merged/`` (a plain HF model folder); the
    chain's adapter on the shared base (``adapter-on-base/``) follows in ``training.adapters``."""
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    adapter_dir = staging / "adapter"
    peft_model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(staging / "merged")
    tokenizer.save_pretrained(staging / "merged")


def _log_run_artifacts(staging: Path) -> None:
    import mlflow

    mlflow.log_artifact(str(staging / "job.yaml"))
    # The adapter is small (MBs even for 7B); the merged model stays on disk and is registered by path.
    mlflow.log_artifacts(str(staging / "adapter"), artifact_path="adapter")


def _result(job, run_name, final: Path, *, start_model, dataset_id, metrics, trainer, run_id) -> TrainResult:
    return TrainResult(
        stage=job.stage,
        run_name=run_name,
        run_dir=str(final),
        model_dir=str(final / "merged"),
        adapter_dir=str(final / "adapter"),
        base_model=start_model,
        dataset_version_ids=[dataset_id],
        metrics=metrics,
        steps=int(trainer.state.global_step),
        mlflow_run_id=run_id,
        mlflow_experiment=experiment_name(job.stage),
    )
