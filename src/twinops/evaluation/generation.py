"""Load each model the same way and answer the golden questions with its chat template."""

from __future__ import annotations

from pathlib import Path

from twinops.models.gptq import is_gptq_folder, load_gptq_as_float
from twinops.models.loaders import load_causal_lm
from twinops.models.resolve import resolve_model
from twinops.settings import Settings


def load_for_evaluation(reference: str, settings: Settings):
    """(model, tokenizer). A GPTQ folder is read dequantized: the float weights are exactly the ones
    the kernels multiply by (without their bf16 rounding), so its scores are the GPTQ model's."""
    path = resolve_model(reference, settings, setting="--model")
    if is_gptq_folder(Path(path)):
        return load_gptq_as_float(path)
    model, tokenizer = load_causal_lm(path)
    model.eval()
    return model, tokenizer


def _prompt(tokenizer, instruction: str) -> str:
    messages = [{"role": "user", "content": instruction}]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{instruction}\n"


def generate_answers(
    model, tokenizer, instructions: list[str], *, max_new_tokens: int, batch_size: int = 4
) -> list[str]:
    """Greedy answers (deterministic, so runs compare), batched with left padding."""
    import torch

    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(instructions), batch_size):
        prompts = [_prompt(tokenizer, text) for text in instructions[start : start + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        answers.extend(text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return answers
