"""Completion perplexity: how well a model predicts the author's answers given the prompts.

exp(mean negative log-likelihood over the completion tokens only), with the prompt rendered by
the model's chat template exactly as in training. DPO reports it on the chosen answers of its
test split so every ``twin-llm`` version carries ``eval_perplexity`` for the promotion gate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _ids(encoded: Any) -> list[int]:
    # apply_chat_template returns a list, or a BatchEncoding in newer tokenizers.
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def completion_perplexity(
    model: Any,
    tokenizer: Any,
    conversations: Iterable[tuple[list[dict], list[dict]]],
    *,
    max_length: int,
) -> float | None:
    """Perplexity of each completion given its prompt; ``None`` when no completion token fits."""
    import torch

    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for prompt, completion in conversations:
            prompt_ids = _ids(
                tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            )
            full_ids = _ids(tokenizer.apply_chat_template(prompt + completion, tokenize=True))[:max_length]
            if len(full_ids) <= len(prompt_ids):
                continue
            labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids) :]
            with torch.no_grad():
                output = model(
                    input_ids=torch.tensor([full_ids], device=device),
                    labels=torch.tensor([labels], device=device),
                )
            counted = len(full_ids) - len(prompt_ids)
            total_nll += float(output.loss) * counted
            total_tokens += counted
    finally:
        model.train(was_training)
    if total_tokens == 0:
        return None
    return math.exp(min(total_nll / total_tokens, 50.0))
