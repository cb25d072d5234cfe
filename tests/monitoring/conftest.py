"""Monitoring fixtures: small generated query sets (one distribution and planted shifts), embedded once.

The texts come from templates, so every set is reproducible: a reference and a held-out pool are
a random split of the same generated questions (the same distribution), while the shifted sets
change only the topic, the language or the length. They are embedded once per session with the
bundled MiniLM through ``features.embedding`` (the path serving uses).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from twinops.monitoring.config import DriftConfig

TECH = [
    "vector databases", "Kafka consumer groups", "Rust's borrow checker", "gradient checkpointing",
    "Kubernetes operators", "feature stores", "LoRA fine-tuning", "Qdrant collections",
    "the MLflow model registry", "Docker layer caching", "Python asyncio", "PostgreSQL indexes",
    "Redis eviction policies", "CUDA kernels", "transformer attention", "CI pipelines",
    "Git rebasing", "TLS certificates", "GraphQL resolvers", "Terraform state",
]  # fmt: skip
COOKING = [
    "sourdough starters", "tomato seedlings", "braising short ribs", "pruning rose bushes",
    "homemade pasta dough", "composting kitchen scraps", "fermenting kimchi", "baking croissants",
    "growing basil indoors", "roasting a whole chicken", "pickling cucumbers", "planting tulip bulbs",
]  # fmt: skip
ENGLISH = [
    "How do {} work?", "What is the best way to debug {}?", "Can you explain {} to a beginner?",
    "Why do people use {} in production?", "What are common mistakes with {}?", "How would you test {}?",
    "When should I avoid {}?", "What did you write about {}?", "Give me your opinion on {}.",
    "How do {} behave under load?", "Summarize your notes on {}.", "What changed recently in {}?",
]  # fmt: skip
FRENCH = [
    "Comment fonctionnent {} ?", "Quelle est la meilleure façon de déboguer {} ?",
    "Peux-tu expliquer {} à un débutant ?", "Pourquoi utilise-t-on {} en production ?",
    "Quelles sont les erreurs courantes avec {} ?", "Comment testerais-tu {} ?",
    "Quand faut-il éviter {} ?", "Qu'as-tu écrit sur {} ?", "Donne-moi ton avis sur {}.",
    "Comment se comportent {} sous forte charge ?", "Résume tes notes sur {}.",
    "Qu'est-ce qui a changé récemment dans {} ?",
]  # fmt: skip
PADDING = (
    " I have been reading the documentation for several weeks and I keep getting lost in the details,"
    " especially when the examples assume a setup that is nothing like ours at work, where the team"
    " runs everything on a small cluster with old hardware and a tight budget. Please answer with a"
    " long explanation that covers the history, the trade-offs, and a worked example step by step."
)


def questions(subjects: list[str], templates: list[str], suffix: str = "") -> list[str]:
    return [t.format(s) + suffix for s, t in itertools.product(subjects, templates)]


@pytest.fixture(scope="session")
def vocabulary() -> SimpleNamespace:
    """The subjects, templates and ``questions`` helper, for tests that build their own sets."""
    return SimpleNamespace(
        tech=TECH, cooking=COOKING, english=ENGLISH, french=FRENCH, padding=PADDING, questions=questions
    )


@pytest.fixture(scope="session")
def drift_texts() -> dict[str, list[str]]:
    same = questions(TECH, ENGLISH)
    random.Random(7).shuffle(same)
    half = len(same) // 2
    return {
        "reference": same[:half],
        "same": same[half:],
        "topic": questions(COOKING, ENGLISH),
        "language": questions(TECH[::2], FRENCH),
        "length": questions(TECH[1::2], ENGLISH, PADDING),
    }


@pytest.fixture(scope="session")
def embedder(bundled_models_dir: Path):
    from twinops.features.embedding import open_embedder
    from twinops.settings import Settings

    return open_embedder(Settings(embedding_model=str(bundled_models_dir / "all-minilm-l6-v2")))


@pytest.fixture(scope="session")
def drift_vectors(embedder, drift_texts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    return {name: embedder.encode(texts, batch_size=64) for name, texts in drift_texts.items()}


@pytest.fixture(scope="session")
def drift_config() -> DriftConfig:
    """The defaults that matter here: 32-text batches, 32 dimensions, 50 calibration draws."""
    return DriftConfig(batch_size=32, calibration_draws=50, reduced_dimension=32)
