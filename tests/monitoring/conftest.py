"""Monitoring fixtures: small generated query sets (one distribution and planted shifts), embedded once.

The texts come from templates, so every set is reproducible: a reference and a held-out pool are
a random split of the same generated questions (the same distribution), while the shifted sets
change only the topic, the language or the length. They are embedded once per session with the
bundled MiniLM through ``features.embedding`` (the path serving uses).

``champion_lineage`` writes what training leaves behind (a features version, an instruction set
built from it, twin-llm v1 [champion] trained on it) into real MongoDB and MLflow stores; the
drift components' tests under ``components/`` load this file too.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import yaml

from twinops.domain.documents import Category, CleanedDocument, Platform
from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.monitoring.config import DriftConfig
from twinops.services.process import wait_until
from twinops.settings import Settings, get_settings

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


@pytest.fixture
def serve_app() -> Iterator[Callable[[object], str]]:
    """``serve_app(app)`` serves an ASGI app on a free 127.0.0.1 port in a thread and returns its
    URL; every app served is stopped at teardown."""
    import uvicorn

    from twinops.services.process import free_port

    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app: object) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


def _metric(url: str, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


@pytest.fixture(scope="session")
def read_metric() -> Callable[..., float | None]:
    """``read_metric(url, name, **labels)``: the sample a service's ``/metrics`` shows, None when absent."""
    return _metric


def _metric_reaches(url: str, name: str, value: float, *, timeout: float = 60.0, **labels: str) -> bool:
    return wait_until(lambda: _metric(url, name, **labels) == value, timeout=timeout, interval=0.05)


@pytest.fixture(scope="session")
def metric_reaches() -> Callable[..., bool]:
    """``metric_reaches(url, name, value, **labels)``: whether the sample shows ``value`` within a
    minute (a batch answered before its test gets its verdict after the reply)."""
    return _metric_reaches


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


def _document(index: int, text: str, *, language: str, platform: Platform) -> CleanedDocument:
    return CleanedDocument(
        document_id=f"doc-{language}-{index}",
        author_id="author-1",
        author_name="Ada",
        platform=platform,
        category=Category.ARTICLES,
        source_url=f"https://example.com/{language}/{index}",
        title=f"note {index}",
        content=text,
        language=language,
        published_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=index),
        source_content_hash=f"hash-{language}-{index}",
    )


def _features_version(settings: Settings, name: str, documents: list[CleanedDocument]) -> DatasetVersion:
    version = DatasetVersion(kind=DatasetKind.FEATURES, name=name, inputs_hash=name)
    folder = settings.home / "features" / version.id
    folder.mkdir(parents=True)
    with (folder / "cleaned_documents.jsonl").open("w") as out:
        for document in documents:
            out.write(document.model_dump_json() + "\n")
    with (folder / "chunks.jsonl").open("w") as out:
        for document in documents:
            out.write(json.dumps({"content": document.content}) + "\n")
    return version.model_copy(update={"uri": str(folder)})


@pytest.fixture
def drift_settings(mongo_settings, mlflow_settings, bundled_models_dir, monkeypatch) -> Settings:
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(bundled_models_dir / "all-minilm-l6-v2"))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def champion_lineage(drift_settings: Settings, vocabulary) -> dict[str, str]:
    """A features version, an instruction set built from it, and twin-llm v1 [champion] trained on it."""
    from mlflow import MlflowClient

    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    repository = DatasetVersionRepository(connect(drift_settings))
    v = vocabulary
    english = v.questions(v.tech[:8], v.english[:5])
    features = _features_version(
        drift_settings,
        "reference",
        [
            _document(
                i, f"{q} Notes and answers follow in the article.", language="en", platform=Platform.WEB
            )
            for i, q in enumerate(english)
        ],
    )
    repository.save(features)
    instruction = DatasetVersion(
        kind=DatasetKind.INSTRUCTION, name="twin", inputs_hash="i", parents=(features.id,)
    )
    folder = drift_settings.datasets_dir / instruction.id
    folder.mkdir(parents=True)
    with (folder / "train.jsonl").open("w") as out:
        for q in english:
            row = {
                "prompt": [{"role": "user", "content": q}],
                "completion": [
                    {"role": "assistant", "content": f"In my notes on this: {q.lower()} It depends."}
                ],
            }
            out.write(json.dumps(row) + "\n")
    instruction = instruction.model_copy(update={"uri": str(folder)})
    repository.save(instruction)
    french = [
        _document(i, q, language="fr", platform=Platform.MEDIUM)
        for i, q in enumerate(v.questions(v.tech[:8], v.french[:5]))
    ]
    shifted = _features_version(drift_settings, "shifted", french)
    repository.save(shifted)

    client = MlflowClient(drift_settings.mlflow_tracking_uri)
    client.create_registered_model("twin-llm")
    with_run = client.create_experiment("training")
    run = client.create_run(with_run)
    version = client.create_model_version(
        "twin-llm",
        source=str(drift_settings.home / "model"),
        run_id=run.info.run_id,
        tags={"dataset_version_ids": instruction.id},
    )
    client.set_registered_model_alias("twin-llm", "champion", version.version)
    return {
        "instruction": instruction.id,
        "features": features.id,
        "shifted": shifted.id,
        "run_id": run.info.run_id,
    }


# Fewer calibration draws and two of evidently's methods: the real paths at a fraction of the cost.
SMALL_CONFIG = {"calibration_draws": 20, "evidently_methods": ["mmd", "distance"]}


@pytest.fixture
def small_config(tmp_path) -> str:
    """``SMALL_CONFIG`` as a drift config file (``--config``)."""
    path = tmp_path / "drift.yaml"
    path.write_text(yaml.safe_dump(SMALL_CONFIG))
    return str(path)


@pytest.fixture
def small_options() -> dict:
    """``SMALL_CONFIG`` as a step's ``options``."""
    return dict(SMALL_CONFIG)
