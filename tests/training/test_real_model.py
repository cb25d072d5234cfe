"""The real bundled SmolLM2-135M-Instruct through SFT and DPO: a few steps, short sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.domain.versions import DatasetKind
from twinops.training import DPOJob, SFTJob, TrainerSpec, train_dpo, train_sft

SHORT = TrainerSpec(
    max_steps=3, max_length=96, per_device_train_batch_size=2, max_eval_samples=4, device="cpu"
)


@pytest.mark.slow
def test_real_135m_sft_then_dpo(training_settings, make_dataset, bundled_models_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    make_dataset(DatasetKind.INSTRUCTION)
    make_dataset(DatasetKind.PREFERENCE)
    base = str(bundled_models_dir / "smollm2-135m-instruct")

    sft = train_sft(SFTJob(model=base, trainer=SHORT), training_settings)
    # A real pretrained model starts far below the random tiny Llama's ~10.8 nats per token.
    assert sft.steps == 3 and sft.metrics["eval_loss"] < 8.0
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
