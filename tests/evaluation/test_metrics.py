"""Each evaluation metric on tiny inputs: real MiniLM, a real tiny Llama, a real sklearn classifier."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from twinops.evaluation.metrics import embedding_cosine, rouge_l
from twinops.evaluation.style import StyleClassifier
from twinops.models.loaders import load_embedder
from twinops.models.perplexity import log_perplexities, perplexity

AUTHOR = [
    "Ship it small. Version the data, track the run, promote on numbers.",
    "Here's the trick: log the dataset version with the model.",
]


def test_rouge_l() -> None:
    assert rouge_l(["the cat sat"], ["the cat sat"]) == [1.0]
    assert rouge_l(["dogs bark loudly"], ["the cat sat"]) == [0.0]


def test_embedding_cosine_with_minilm(eval_settings) -> None:
    embedder = load_embedder(eval_settings)
    close, far = embedding_cosine(
        embedder,
        ["Qdrant stores the embeddings.", "I like pancakes for breakfast."],
        ["The embeddings are stored in Qdrant.", "The embeddings are stored in Qdrant."],
    )
    assert close > 0.7 > far


def test_perplexity_per_text_and_corpus(tiny_llama: Path) -> None:
    from twinops.domain.stats import value
    from twinops.models.loaders import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_llama))
    logs = log_perplexities(model, tokenizer, [*AUTHOR, "x"], max_length=32)
    assert math.isnan(logs[2]) and all(not math.isnan(v) for v in logs[:2])  # too short to predict
    # Per text, the log-perplexity is the log of that text's own perplexity.
    for text, log_value in zip(AUTHOR, logs, strict=False):
        assert math.isclose(
            math.exp(log_value), perplexity(model, tokenizer, [text], max_length=32), rel_tol=1e-4
        )
    # A random 2-layer model is near-uniform over its 49k vocabulary.
    assert 1000 < value("golden_perplexity", logs) < 200_000


def test_style_classifier_tells_author_from_base(eval_settings, style_corpus) -> None:
    embedder = load_embedder(eval_settings)
    classifier = StyleClassifier.fit(embedder, *style_corpus)
    author, base = classifier.author_probability(
        ["Measure twice, ship once: pin the dataset version.", "Certainly! Here is a comprehensive overview."]
    )
    assert author > 0.5 > base
    assert 0.0 <= classifier.held_out_accuracy <= 1.0 and classifier.trained_on == 16


def test_style_classifier_needs_enough_texts(eval_settings) -> None:
    from twinops.errors import ConfigError

    with pytest.raises(ConfigError, match="style classifier needs"):
        StyleClassifier.fit(load_embedder(eval_settings), AUTHOR, AUTHOR)


def test_style_classifier_weighs_a_few_base_answers_against_many_author_texts(
    eval_settings, style_corpus
) -> None:
    """The dataset step's budget leaves far fewer base-model answers than author texts: unseen base
    answers must still read as the base model's, not as the author's by sheer majority."""
    author_texts, base_texts = style_corpus
    many_author = [f"{text} (note {n})" for n in range(6) for text in author_texts]
    classifier = StyleClassifier.fit(load_embedder(eval_settings), many_author, base_texts[:4])
    unseen_base = classifier.author_probability(base_texts[4:])
    assert sum(unseen_base) / len(unseen_base) < 0.5
