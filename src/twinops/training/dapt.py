"""Domain-adaptive continued pretraining (DAPT): a LoRA pass over the author's own text before SFT.

SFT teaches the model to answer; it learns the author's vocabulary and phrasing only from the
completion tokens of a few hundred short answers. DAPT first trains on the author's passages as
plain causal-LM text: no chat template, no prompt, every token in the loss.

The passages are the answers of the instruction dataset's train split: the author's chunks from
the training documents, already decontaminated against the golden set. The held-out documents
the evaluation measures perplexity on are in the test split and are never trained on (the test
split only gives ``passage_test_perplexity``). Passages are shuffled (seeded), joined with the
end-of-text token and cut into blocks of ``trainer.max_length`` tokens: no token is truncated
away and no step pays for padding (a block may span two passages, both the author's).

The adapter is merged into ``merged/`` and SFT starts from that model with a fresh adapter, as
DPO starts from SFT's merged model. peft's ``merge_and_unload`` folds the adapter into float
weights exactly, and TRL then wraps the merged model as it wraps any base. Continuing the one
adapter (``PeftModel.from_pretrained(..., is_trainable=True)``) would tie SFT to DAPT's rank and
layers, and the DAPT model would not exist as a folder the evaluation and the quantizer can read.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from twinops.domain.versions import DatasetKind
from twinops.errors import NotFound
from twinops.infra.runs import latest_model, runs_dir
from twinops.settings import Settings
from twinops.training.config import DAPTJob
from twinops.training.lora import run_lora_stage
from twinops.training.runs import TrainResult
from twinops.training.sft import base_start_model, build_sft_trainer

if TYPE_CHECKING:
    from datasets import Dataset

# A last block shorter than this is dropped: it would teach little and cost a padded step.
MIN_BLOCK_TOKENS = 16


def passages(split: Dataset) -> list[str]:
    """The author's passages of an instruction split (each answer once, in split order)."""
    texts = []
    for completion in split["completion"]:
        text = completion[-1]["content"] if isinstance(completion, list) and completion else completion
        if isinstance(text, str) and text.strip():
            texts.append(text.strip())
    return list(dict.fromkeys(texts))


def text_blocks(split: Dataset, tokenizer: Any, *, max_length: int, seed: int) -> Dataset:
    """The split's passages as causal-LM blocks of ``max_length`` tokens (``input_ids`` = ``labels``)."""
    from datasets import Dataset

    texts = passages(split)
    random.Random(seed).shuffle(texts)  # noqa: S311 - a reproducible order, not crypto
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + separator
    blocks = [stream[start : start + max_length] for start in range(0, len(stream), max_length)]
    blocks = [block for block in blocks if len(block) >= MIN_BLOCK_TOKENS]
    return Dataset.from_dict({"input_ids": blocks, "labels": [list(block) for block in blocks]})


def with_passage_perplexity(metrics: dict[str, float]) -> dict[str, float]:
    """Add ``passage_test_perplexity`` = exp(mean token loss on the test split's passages, as blocks)."""
    if "eval_loss" in metrics:
        metrics["passage_test_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    return metrics


def train_dapt(job: DAPTJob, settings: Settings) -> TrainResult:
    """Adapt ``job.model`` (default ``TWINOPS_BASE_MODEL``) to the passages of ``job.dataset``.

    Writes ``runs/dapt/<run>/adapter`` and ``merged`` (contract 5) and one MLflow run in
    ``twinops-dapt``; ``twinops train sft --from-dapt`` (and the pipelines' sft step) start there.
    """
    return run_lora_stage(
        job,
        settings,
        start_model=base_start_model(job, settings),
        kind=DatasetKind.INSTRUCTION,
        rows=lambda split, tokenizer: text_blocks(
            split, tokenizer, max_length=job.trainer.max_length, seed=job.trainer.seed
        ),
        # The blocks are tokenized already: TRL pads them and leaves every token in the loss.
        build_trainer=lambda *args, **kwargs: build_sft_trainer(job, *args, **kwargs, completion_only=False),
        derive_metrics=with_passage_perplexity,
    )


def latest_dapt_model(settings: Settings) -> str:
    """The merged model of the newest finished DAPT run (where SFT starts with ``--from-dapt``)."""
    latest = latest_model("dapt", settings)
    if latest is None:
        raise NotFound(
            f"no finished DAPT run under {runs_dir(settings) / 'dapt'}: run `twinops train dapt` first "
            "or drop --from-dapt"
        )
    return str(latest)
