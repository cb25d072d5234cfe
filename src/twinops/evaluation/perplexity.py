"""Perplexity of a causal LM on held-out author texts (token-weighted, one text at a time)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def perplexity(model, tokenizer, texts: Iterable[str], *, max_length: int = 256) -> float:
    """exp(mean next-token NLL) over every predicted token of ``texts``, each cut to ``max_length``."""
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
            # Shift so that each position predicts the next token.
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            total_nll += float(loss)
            total_tokens += ids.shape[1] - 1
    if total_tokens == 0:
        return float("nan")
    return math.exp(total_nll / total_tokens)
