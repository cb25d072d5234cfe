"""A style score: how much an answer reads like the author rather than the base model.

A logistic regression on MiniLM embeddings, trained on the preference set (chosen = the author's
text, rejected = the base model's answer to the same prompt). A model's style score is the mean
probability that its answers are the author's. The classes are weighed by their sizes: every
instruction row has its author's text, while the base model answered only as many as the dataset
step's time budget allowed, and an unweighed fit would call nearly anything the author's.
"""

from __future__ import annotations

from dataclasses import dataclass

from twinops.errors import ConfigError

MIN_PER_CLASS = 4


@dataclass
class StyleClassifier:
    embedder: object
    classifier: object
    held_out_accuracy: float
    trained_on: int

    @classmethod
    def fit(
        cls, embedder, author_texts: list[str], base_texts: list[str], *, seed: int = 0
    ) -> StyleClassifier:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        if min(len(author_texts), len(base_texts)) < MIN_PER_CLASS:
            raise ConfigError(
                f"the style classifier needs >= {MIN_PER_CLASS} author and base texts, got "
                f"{len(author_texts)}/{len(base_texts)}: build a bigger preference set"
            )
        texts = author_texts + base_texts
        labels = np.array([1] * len(author_texts) + [0] * len(base_texts))
        features = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        train_x, test_x, train_y, test_y = train_test_split(
            features, labels, test_size=0.25, random_state=seed, stratify=labels
        )
        classifier = LogisticRegression(max_iter=1000, C=4.0, class_weight="balanced").fit(train_x, train_y)
        accuracy = float(classifier.score(test_x, test_y))
        # Refit on everything: the held-out accuracy above is the honest estimate.
        classifier = LogisticRegression(max_iter=1000, C=4.0, class_weight="balanced").fit(features, labels)
        return cls(embedder, classifier, accuracy, len(texts))

    def author_probability(self, texts: list[str]) -> list[float]:
        if not texts:
            return []
        features = self.embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return [float(p) for p in self.classifier.predict_proba(features)[:, 1]]
