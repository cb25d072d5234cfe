"""Perplexity of a causal LM: one next-token negative log-likelihood, three ways to read it.

- ``perplexity``: token-weighted over texts (``exp`` of the mean NLL of every predicted token), as
  the quantize step compares a model before and after GPTQ;
- ``log_perplexities``: per text, the mean NLL of its tokens (a value per text, so an evaluation can
  put a confidence interval on their mean);
- ``completion_perplexity``: only the completion tokens of chat conversations, the prompt rendered
  by the model's chat template as in training (DPO reports it on its chosen answers).

Every variant goes through ``_nll``; texts are cut to ``max_length`` tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _nll(model: Any, ids: list[int], first_target: int) -> tuple[float, int]:
    """(sum of NLL, count) of the tokens at positions ``first_target``.. given everything before."""
    import torch

    device = next(model.parameters()).device
    first_target = max(first_target, 1)
    tokens = torch.tensor([ids], device=device)
    with torch.no_grad():
        logits = model(input_ids=tokens).logits.float()[0, :-1]
    # Position i of the logits predicts token i + 1.
    start = first_target - 1
    loss = torch.nn.functional.cross_entropy(logits[start:], tokens[0, first_target:], reduction="sum")
    return float(loss), len(ids) - first_target


def _text_ids(tokenizer: Any, text: str, max_length: int) -> list[int]:
    return tokenizer(text, truncation=True, max_length=max_length)["input_ids"]


def _chat_ids(encoded: Any) -> list[int]:
    # apply_chat_template returns a list, or a BatchEncoding in newer tokenizers.
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


class _Eval:
    """The model in eval mode for the block, back in its own mode after."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.was_training = bool(getattr(model, "training", False))

    def __enter__(self) -> Any:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def perplexity(model: Any, tokenizer: Any, texts: Iterable[str], *, max_length: int = 256) -> float:
    """exp(mean next-token NLL) over every predicted token of ``texts``; NaN when none has two tokens."""
    total_nll, total_tokens = 0.0, 0
    with _Eval(model):
        for text in texts:
            ids = _text_ids(tokenizer, text, max_length)
            if len(ids) < 2:
                continue
            nll, count = _nll(model, ids, 1)
            total_nll += nll
            total_tokens += count
    return math.exp(total_nll / total_tokens) if total_tokens else float("nan")


def log_perplexities(
    model: Any, tokenizer: Any, texts: Iterable[str], *, max_length: int = 256
) -> list[float]:
    """Per text, the mean next-token NLL (NaN for a text shorter than two tokens)."""
    values: list[float] = []
    with _Eval(model):
        for text in texts:
            ids = _text_ids(tokenizer, text, max_length)
            if len(ids) < 2:
                values.append(math.nan)
                continue
            nll, count = _nll(model, ids, 1)
            values.append(nll / count)
    return values


def completion_perplexity(
    model: Any,
    tokenizer: Any,
    conversations: Iterable[tuple[list[dict], list[dict]]],
    *,
    max_length: int,
) -> float | None:
    """Perplexity of each completion given its prompt; ``None`` when no completion token fits."""
    total_nll, total_tokens = 0.0, 0
    with _Eval(model):
        for prompt, completion in conversations:
            prompt_ids = _chat_ids(
                tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            )
            full_ids = _chat_ids(tokenizer.apply_chat_template(prompt + completion, tokenize=True))[
                :max_length
            ]
            if len(full_ids) <= len(prompt_ids):
                continue
            nll, count = _nll(model, full_ids, len(prompt_ids))
            total_nll += nll
            total_tokens += count
    if total_tokens == 0:
        return None
    return math.exp(min(total_nll / total_tokens, 50.0))
