"""What the training stages share: run folders (contract 5), trainer arguments, the result model."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twinops.domain.hashing import content_hash
from twinops.domain.versions import ModelVersion
from twinops.infra.runs import runs_dir
from twinops.training.config import LoraSpec, TrainerSpec, _JobBase
from twinops.training.distributed import (  # is_main_process: the stages import it from here
    from_main_process,
    has_cuda,
    is_main_process,  # noqa: F401
    world_size,
)

RESULT_FILE = "train_result.json"


class TrainResult(BaseModel):
    """The summary a training stage returns (and writes as ``train_result.json`` in its run folder)."""

    stage: str
    run_name: str
    run_dir: str
    model_dir: str = Field(
        description="merged/ for sft and dpo (a plain HF folder), the CrossEncoder folder."
    )
    adapter_dir: str | None = Field(None, description="This stage's LoRA adapter, on ``base_model``.")
    base_model: str = Field(description="The resolved model the run started from.")
    shared_adapter_dir: str | None = Field(
        None, description="The whole chain's adapter on ``shared_base`` (training.adapters), else None."
    )
    shared_base: str | None = Field(None, description="The base model ``shared_adapter_dir`` applies to.")
    shared_adapter_missing: str | None = Field(None, description="Why the run has no adapter on a base.")
    dataset_version_ids: list[str]
    metrics: dict[str, float] = Field(default_factory=dict)
    steps: int = 0
    mlflow_run_id: str | None = None
    mlflow_experiment: str | None = None
    registered: ModelVersion | None = None


def plan_run_dir(job: _JobBase, settings, fingerprint: Any) -> tuple[str, Path]:
    """(run name, final folder): ``runs/<stage>/<stage>-<utc time>-<hash of job + inputs>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = job.run_name or f"{job.stage}-{stamp}-{content_hash(job.model_dump(mode='json'), fingerprint)[:6]}"
    # Under torchrun every rank plans; rank 0's name wins so all ranks agree on the folder.
    name = from_main_process(name)
    return name, run_parent(job, settings) / name


def run_parent(job: _JobBase, settings) -> Path:
    """The folder a job's run folders go in: ``output_dir``, else ``runs/<stage>/``."""
    return Path(job.output_dir or runs_dir(settings) / job.stage).expanduser().resolve()


def staging_dir(final: Path) -> Path:
    """Where a run writes until it is complete; renamed to ``final`` at the end."""
    staging = final.with_name(final.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, final: Path) -> None:
    """Make the run folder appear whole or not at all (trainer scratch removed first)."""
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


def planned_steps(spec: TrainerSpec, train_rows: int | None) -> int:
    """The ``max_steps`` to hand the trainer: ``spec.max_steps``, or with -1 (epochs) the steps that
    ``num_train_epochs`` over ``train_rows`` take, cut at ``spec.step_cap``.

    Counted as transformers counts them (a last short batch is a step; accumulation rounds up), with
    every rank taking its share of the rows, so a capped run stops where the cap says.
    """
    if spec.max_steps != -1 or spec.step_cap < 1 or not train_rows:
        return spec.max_steps
    batches = math.ceil(train_rows / (spec.per_device_train_batch_size * world_size()))
    per_epoch = max(1, math.ceil(batches / spec.gradient_accumulation_steps))
    return min(spec.step_cap, math.ceil(spec.num_train_epochs * per_epoch))


def trainer_kwargs(spec: TrainerSpec, output_dir: Path, *, train_rows: int | None = None) -> dict[str, Any]:
    """Keyword arguments shared by every ``TrainingArguments`` subclass (SFT, DPO, CrossEncoder);
    ``train_rows`` sizes a run of epochs under its ``step_cap`` (``planned_steps``)."""
    return {
        "output_dir": str(output_dir),
        "learning_rate": spec.learning_rate,
        "num_train_epochs": spec.num_train_epochs,
        "max_steps": planned_steps(spec, train_rows),
        "per_device_train_batch_size": spec.per_device_train_batch_size,
        "per_device_eval_batch_size": spec.per_device_eval_batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "warmup_steps": int(spec.warmup_steps) if spec.warmup_steps >= 1 else spec.warmup_steps,
        "weight_decay": spec.weight_decay,
        "lr_scheduler_type": spec.lr_scheduler_type,
        "logging_steps": spec.logging_steps,
        "seed": spec.seed,
        "data_seed": spec.seed,
        "bf16": spec.bf16,
        "activation_checkpointing": spec.gradient_checkpointing,
        # use_reentrant=False is the variant that works with frozen base weights (LoRA).
        "activation_checkpointing_kwargs": {"use_reentrant": False} if spec.gradient_checkpointing else None,
        "dataloader_pin_memory": has_cuda(),
        "use_cpu": spec.device == "cpu",
        "dataloader_num_workers": spec.dataloader_num_workers,
        # Checkpoints are not kept: the run folder gets the adapter and the merged model instead.
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
    }


def lora_config(spec: LoraSpec):
    from peft import LoraConfig

    modules: Any = spec.target_modules
    if modules == ["all-linear"]:
        modules = "all-linear"
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=modules,
        task_type="CAUSAL_LM",
    )


def load_trainable_lm(reference: str, *, dtype: str = "float32"):
    """A causal LM + tokenizer ready for LoRA training from a folder or HF id."""
    from twinops.models.loaders import load_causal_lm

    return load_causal_lm(reference, dtype=dtype)


def quiet_libraries() -> None:
    """Silence per-map progress bars and info chatter; the run has its own rich bar."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()


def final_loss(log_history: list[dict[str, Any]]) -> float | None:
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return float(losses[-1]) if losses else None
