"""Supervised fine-tuning: TRL ``SFTTrainer`` + a peft LoRA adapter on the instruction dataset.

The dataset is conversational prompt/completion (contract 4), so TRL renders it with the model's
chat template and, with ``completion_only_loss``, masks the prompt tokens out of the loss: the
model learns to answer like the author, not to reproduce the questions.
"""

from __future__ import annotations

import math
from typing import Any

from twinops.domain.versions import DatasetKind
from twinops.models.resolve import resolve_model
from twinops.settings import Settings
from twinops.training.config import SFTJob
from twinops.training.lora import run_lora_stage
from twinops.training.runs import TrainResult, lora_config, trainer_kwargs

SFT_COLUMNS = ("prompt", "completion")


def sft_config(job: SFTJob, output_dir) -> Any:
    from trl import SFTConfig

    kwargs = trainer_kwargs(job.trainer, output_dir)
    return SFTConfig(
        **kwargs,
        max_length=job.trainer.max_length,
        completion_only_loss=True,
        packing=False,
    )


def build_sft_trainer(job: SFTJob, model, tokenizer, *, train, test, output_dir, callbacks) -> Any:
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=sft_config(job, output_dir),
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
        peft_config=lora_config(job.lora),
        callbacks=callbacks,
    )


def with_perplexity(metrics: dict[str, float]) -> dict[str, float]:
    """Add ``instruction_test_perplexity`` = exp(mean completion-token loss on the instruction test split).

    Named for what it measures: DPO's is ``preference_test_perplexity``, evaluation's ``golden_perplexity``.
    """
    if "eval_loss" in metrics:
        metrics["instruction_test_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    return metrics


def train_sft(job: SFTJob, settings: Settings) -> TrainResult:
    """Fine-tune ``job.model`` (default ``TWINOPS_BASE_MODEL``) on the instruction dataset ``job.dataset``.

    Writes ``runs/sft/<run>/adapter`` and ``merged`` (contract 5) and one MLflow run in ``twinops-sft``.
    """
    setting = "the SFT config's `model`" if job.model else "TWINOPS_BASE_MODEL"
    start_model = resolve_model(job.model or settings.base_model, settings, setting=setting)
    return run_lora_stage(
        job,
        settings,
        start_model=start_model,
        kind=DatasetKind.INSTRUCTION,
        columns=SFT_COLUMNS,
        build_trainer=lambda *args, **kwargs: build_sft_trainer(job, *args, **kwargs),
        derive_metrics=with_perplexity,
    )
