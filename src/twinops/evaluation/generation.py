"""Load each model as it will be served and answer the golden questions with its chat template.

A GPTQ folder runs on its own kernels (``twinops.models.loaders.load_generation_model``), or the
evaluation fails, so its perplexity and answers are the quantized model's; its dequantized float copy
is loaded too, only to check that both agree on perplexity within the job's tolerance (beyond it the
evaluation fails; within it the report notes the agreement).
"""

from __future__ import annotations

from twinops.models.loaders import GenerationModel, load_generation_model
from twinops.models.rerank import pick_device


def load_for_evaluation(path: str, *, device: str = "auto", dtype: str = "float32") -> GenerationModel:
    """The model at ``path`` (resolved) on ``pick_device(device)``; float weights in ``dtype`` on CUDA."""
    import torch

    loaded = load_generation_model(path)
    placed = pick_device(device)
    if placed != "cpu" and loaded.backend == "float":
        loaded.model.to(device=placed, dtype=getattr(torch, dtype))
    loaded.model.eval()
    return loaded


def load_dequantized(path: str):
    """(model, tokenizer): a GPTQ folder's exact float copy, the check beside the kernels."""
    from twinops.models.gptq import load_gptq_as_float

    return load_gptq_as_float(path)


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
    device = next(model.parameters()).device
    answers: list[str] = []
    for start in range(0, len(instructions), batch_size):
        prompts = [_prompt(tokenizer, text) for text in instructions[start : start + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
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
