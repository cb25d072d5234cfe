"""The real bundled SmolLM2-135M-Instruct through SFT and DPO: a few steps, short sequences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.domain.versions import DatasetKind
from twinops.training import DPOJob, SFTJob, TrainerSpec, train_dpo, train_sft

SHORT = TrainerSpec(
    max_steps=3, max_length=96, per_device_train_batch_size=2, max_eval_samples=4, device="cpu"
)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def completion_perplexity_of(model_dir: str, conversations: list) -> float:
    from twinops.models.loaders import load_causal_lm
    from twinops.models.perplexity import completion_perplexity

    model, tokenizer = load_causal_lm(model_dir)
    return completion_perplexity(model, tokenizer, conversations, max_length=SHORT.max_length)


@pytest.mark.slow
def test_real_135m_sft_then_dpo(training_settings, make_dataset, bundled_models_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    instruction = make_dataset(DatasetKind.INSTRUCTION)
    make_dataset(DatasetKind.PREFERENCE)
    base = str(bundled_models_dir / "smollm2-135m-instruct")

    sft = train_sft(SFTJob(model=base, trainer=SHORT), training_settings)
    # Training moved the held-out loss: the test split's answers, scored the way SFT's eval scores
    # them (completion tokens after the chat-templated prompt), are likelier after 3 steps than before.
    held_out = [(row["prompt"], row["completion"]) for row in _jsonl(Path(instruction.uri) / "test.jsonl")]
    before = completion_perplexity_of(base, held_out)
    after = completion_perplexity_of(sft.model_dir, held_out)
    assert sft.steps == 3 and after < before, (before, after)
    dpo = train_dpo(DPOJob(trainer=SHORT.model_copy(update={"max_steps": 1})), training_settings)
    assert dpo.base_model == sft.model_dir and dpo.steps == 1

    tokenizer = AutoTokenizer.from_pretrained(dpo.model_dir)
    model = AutoModelForCausalLM.from_pretrained(dpo.model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a short note about chess."}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
