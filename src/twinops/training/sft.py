"""Supervised fine-tuning: TRL ``SFTTrainer`` + a peft LoRA adapter on the instruction dataset.

The dataset is conversational prompt/completion (contract 4), so TRL renders it with the model's
chat template and, with ``completion_only_loss``, masks the prompt tokens out of the loss: the
model learns to answer like the author, not to reproduce the questions.

The trainer is TRL's minus two per-step extras nobody here reads (``sft_trainer_class``): it keeps
TRL for what it earns (chat-template rendering, the completion mask, truncation, the collator, the
PEFT wrapping, and on CUDA its chunked LM head, which never materialises the logits of a large
vocabulary), and drops the entropy and top-1 token accuracy TRL computes over the whole vocabulary
on every step. ``bench/training/run.py`` measures what that buys against a plain ``Trainer``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from twinops.domain.versions import DatasetKind
from twinops.models.resolve import resolve_model
from twinops.settings import Settings
from twinops.training.config import DAPTJob, SFTJob
from twinops.training.lora import columns, run_lora_stage
from twinops.training.runs import TrainResult, lora_config, trainer_kwargs

SFT_COLUMNS = ("prompt", "completion")
# Devices where TRL's chunked LM head runs as a Triton kernel over the completion tokens only; elsewhere
# it runs as torch ops over every position and recomputes the logits in backward: on 2 CPU cores the
# tiny Llama trained at 0.43 of a plain Trainer's steps/s through it (log-probs only), so the model's
# own loss is used there.
CHUNKED_LM_HEAD_DEVICES = ("cuda", "xpu")


def sft_config(
    job: SFTJob | DAPTJob, output_dir, *, train_rows: int | None = None, completion_only: bool = True
) -> Any:
    """TRL's config; ``completion_only=False`` keeps every token in the loss (DAPT's plain text)."""
    from trl import SFTConfig

    kwargs = trainer_kwargs(job.trainer, output_dir, train_rows=train_rows)
    return SFTConfig(
        **kwargs,
        max_length=job.trainer.max_length,
        completion_only_loss=completion_only,
        packing=False,
    )


@functools.cache
def sft_trainer_class() -> type:
    """TRL's ``SFTTrainer`` without the per-step entropy and token accuracy (built on first use).

    TRL 1.16 patches the model with a chunked LM head that returns, besides each label's log-prob,
    the entropy of the next-token distribution and whether the label is its argmax, and logs their
    means (``entropy``, ``mean_token_accuracy``, ``num_tokens``) with every loss. Nothing reads them,
    and on CPU they are extra passes over a (tokens x vocabulary) tile on every step, forward and
    backward. Here the loss is the one a plain ``Trainer`` computes from the model's output: on CPU
    the model's own (full logits, cross-entropy over the completion tokens), on CUDA the chunked head
    asked for the log-probs alone. Same loss, same gradients, same ``loss``/``eval_loss`` logs.
    """
    from transformers import Trainer
    from trl import SFTTrainer
    from trl.trainer.utils import add_fused_lm_head

    class LeanSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            get_base = getattr(self.model, "get_base_model", None)
            base = get_base() if get_base is not None else self.model
            # TRL set its head (log-probs + entropy + top-1) as an instance attribute over the class forward.
            vars(base).pop("forward", None)
            self.chunked_lm_head = self.args.device.type in CHUNKED_LM_HEAD_DEVICES
            if self.chunked_lm_head:
                add_fused_lm_head(base, outputs=("log_probs",))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {**inputs, "use_cache": False}
            if self.chunked_lm_head:
                inputs["fused_lm_head"] = True
            # Trainer's own: the model's loss, scaled for accumulation and ranks as a plain Trainer scales it.
            return Trainer.compute_loss(
                self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )

    return LeanSFTTrainer


def build_sft_trainer(
    job: SFTJob | DAPTJob,
    model,
    tokenizer,
    *,
    train,
    test,
    output_dir,
    callbacks,
    completion_only: bool = True,
) -> Any:
    return sft_trainer_class()(
        model=model,
        args=sft_config(job, output_dir, train_rows=len(train), completion_only=completion_only),
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


def base_start_model(job: SFTJob | DAPTJob, settings: Settings) -> str:
    """``job.model`` resolved, else ``TWINOPS_BASE_MODEL``'s model."""
    setting = f"the {job.stage.upper()} config's `model`" if job.model else "TWINOPS_BASE_MODEL"
    return resolve_model(job.model or settings.base_model, settings, setting=setting)


def train_sft(job: SFTJob, settings: Settings) -> TrainResult:
    """Fine-tune ``job.model`` (default ``TWINOPS_BASE_MODEL``) on the instruction dataset ``job.dataset``.

    Writes ``runs/sft/<run>/adapter`` and ``merged`` (contract 5) and one MLflow run in ``twinops-sft``.
    """
    return run_lora_stage(
        job,
        settings,
        start_model=base_start_model(job, settings),
        kind=DatasetKind.INSTRUCTION,
        rows=columns(*SFT_COLUMNS),
        build_trainer=lambda *args, **kwargs: build_sft_trainer(job, *args, **kwargs),
        derive_metrics=with_perplexity,
    )
