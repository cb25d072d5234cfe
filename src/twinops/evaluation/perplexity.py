"""Perplexity of held-out author text, per text, so that it gets a confidence interval.

Each text's value is its log-perplexity: the mean next-token negative log-likelihood over its
tokens (cut to ``max_length``). The golden perplexity is ``exp`` of the mean of those
(``twinops.domain.stats``): the geometric mean of per-text perplexities, resampled per text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def log_perplexities(model, tokenizer, texts: Iterable[str], *, max_length: int = 256) -> list[float]:
    """Per text, mean next-token NLL (NaN for a text shorter than two tokens)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    values: list[float] = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length).input_ids
            if ids.shape[1] < 2:
                values.append(math.nan)
                continue
            ids = ids.to(device)
            logits = model(input_ids=ids).logits.float()
            # Shift so that each position predicts the next token.
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="mean")
            values.append(float(loss))
    return values


def perplexity(model, tokenizer, texts: Iterable[str], *, max_length: int = 256) -> float:
    """exp(mean next-token NLL) over every predicted token of ``texts`` (token-weighted), each cut to
    ``max_length``: the quantize step's before/after ratio."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    total_nll = 0.0
    total_tokens = 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length).input_ids
            if ids.shape[1] < 2:
                continue
            ids = ids.to(device)
            logits = model(input_ids=ids).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            total_nll += float(loss)
            total_tokens += ids.shape[1] - 1
    if total_tokens == 0:
        return float("nan")
    return math.exp(total_nll / total_tokens)
