"""Preference tuning: TRL ``DPOTrainer`` with a LoRA adapter, starting from the SFT model.

With a peft adapter the reference policy is the start model itself (adapter disabled), so no
second copy of the weights is held in memory. ``beta`` sets how far the policy may drift from it.
"""

from __future__ import annotations

from typing import Any

from twinops.domain.versions import DatasetKind
from twinops.errors import NotFound
from twinops.infra.runs import latest_model, runs_dir
from twinops.models.resolve import resolve_model
from twinops.settings import Settings
from twinops.training.config import DPOJob
from twinops.training.lora import columns, run_lora_stage
from twinops.training.runs import TrainResult, lora_config, trainer_kwargs

DPO_COLUMNS = ("prompt", "chosen", "rejected")


def dpo_config(job: DPOJob, output_dir, *, train_rows: int | None = None) -> Any:
    from trl import DPOConfig

    kwargs = trainer_kwargs(job.trainer, output_dir, train_rows=train_rows)
    return DPOConfig(**kwargs, max_length=job.trainer.max_length, beta=job.beta)


def build_dpo_trainer(job: DPOJob, model, tokenizer, *, train, test, output_dir, callbacks) -> Any:
    from trl import DPOTrainer

    return DPOTrainer(
        model=model,
        args=dpo_config(job, output_dir, train_rows=len(train)),
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
        peft_config=lora_config(job.lora),
        callbacks=callbacks,
    )


def start_model_for(job: DPOJob, settings: Settings) -> str:
    """``job.model`` resolved, else the merged model of the newest SFT run."""
    if job.model:
        return resolve_model(job.model, settings, setting="the DPO config's `model` (or --model)")
    latest = latest_model("sft", settings)
    if latest is None:
        raise NotFound(
            f"no finished SFT run under {runs_dir(settings) / 'sft'}: run `twinops train sft` first "
            "or pass --model PATH_TO_MERGED_MODEL"
        )
    return str(latest)


def train_dpo(job: DPOJob, settings: Settings) -> TrainResult:
    """DPO on the preference dataset ``job.dataset`` from the SFT model; writes runs/dpo/<run>/."""
    return run_lora_stage(
        job,
        settings,
        start_model=start_model_for(job, settings),
        kind=DatasetKind.PREFERENCE,
        rows=columns(*DPO_COLUMNS),
        build_trainer=lambda *args, **kwargs: build_dpo_trainer(job, *args, **kwargs),
        extra_eval=lambda model, tokenizer, test: chosen_perplexity(model, tokenizer, test, job),
    )


def chosen_perplexity(model, tokenizer, test, job: DPOJob) -> dict[str, float]:
    """``preference_test_perplexity``: completion perplexity of the test split's chosen (author) answers."""
    from twinops.models.perplexity import completion_perplexity

    pairs = ((row["prompt"], row["chosen"]) for row in test)
    value = completion_perplexity(model, tokenizer, pairs, max_length=job.trainer.max_length)
    return {} if value is None else {"preference_test_perplexity": value}
