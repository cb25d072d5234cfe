"""Perplexity, one implementation (twinops.models.perplexity), checked where the answer is known.

A model whose output layer is all zeros predicts the uniform distribution, whose perplexity is
exactly the vocabulary size, whatever the text: every variant must say so.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from twinops.models.perplexity import completion_perplexity, log_perplexities, perplexity

TEXTS = [
    "Boring infrastructure wins because the people on call already know how it fails.",
    "x",  # a single token predicts nothing: skipped (NaN per text)
    "Evaluation gates and golden sets matter more than any clever trick.",
]
CHAT = [
    (
        [{"role": "user", "content": "Why a feature store?"}],
        [{"role": "assistant", "content": "Consistency between training and serving."}],
    )
]


@pytest.fixture(scope="module")
def uniform_model(tiny_llama: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    return model, AutoTokenizer.from_pretrained(tiny_llama)


def test_uniform_predictions_have_the_vocabulary_size_as_perplexity(uniform_model) -> None:
    model, tokenizer = uniform_model
    vocab = model.config.vocab_size
    assert perplexity(model, tokenizer, TEXTS) == pytest.approx(vocab, rel=1e-4)
    per_text = log_perplexities(model, tokenizer, TEXTS)
    assert math.isnan(per_text[1])
    assert per_text[0] == pytest.approx(math.log(vocab), rel=1e-5)
    assert completion_perplexity(model, tokenizer, CHAT, max_length=128) == pytest.approx(vocab, rel=1e-4)


def test_token_weighted_perplexity_is_the_weighted_mean_of_the_per_text_values(tiny_llama: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    counts = [len(tokenizer(text)["input_ids"]) - 1 for text in TEXTS]
    per_text = log_perplexities(model, tokenizer, TEXTS)
    weighted = sum(c * v for c, v in zip(counts, per_text, strict=True) if c > 0) / sum(
        c for c in counts if c > 0
    )
    assert perplexity(model, tokenizer, TEXTS) == pytest.approx(math.exp(weighted), rel=1e-5)
    assert model.training is False  # left in eval mode, as it was after from_pretrained


def test_nothing_to_score_is_nan_or_none(uniform_model) -> None:
    model, tokenizer = uniform_model
    assert math.isnan(perplexity(model, tokenizer, ["x"]))
    assert completion_perplexity(model, tokenizer, CHAT, max_length=1) is None
