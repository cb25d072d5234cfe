"""Feature-test helpers: settings with the real MiniLM embedder and a small planted corpus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.settings import Settings, get_settings

ADA = Author(full_name="Ada Lovelace")
GRACE = Author(full_name="Grace Hopper")

_TOPICS = [
    "Vector databases index embeddings so that retrieval finds passages by meaning. Choosing the "
    "distance metric matters: cosine similarity ignores vector length while the dot product does not.",
    "Kafka consumers track offsets per partition. When a consumer group rebalances, partitions move "
    "between members and uncommitted offsets lead to records being processed twice.",
    "Rust's borrow checker turns aliasing bugs into compile errors. A mutable reference is exclusive, "
    "so two threads cannot write the same buffer without a lock or a channel between them.",
    "Gradient checkpointing trades compute for memory: activations are recomputed in the backward "
    "pass instead of being stored, which lets a larger batch fit on the same accelerator.",
    "Kubernetes operators encode the knowledge of a human operator into a controller loop that keeps "
    "reconciling the desired state written in a custom resource with what actually runs.",
    "Feature stores keep training and serving consistent: the same transformation code produces the "
    "offline tables for training and the online values a model reads at request time.",
]


def article(index: int, *, extra: str = "") -> str:
    """A Markdown article with a header, two paragraphs and a code block (distinct per index)."""
    body = _TOPICS[index % len(_TOPICS)]
    other = _TOPICS[(index + 2) % len(_TOPICS)]
    return (
        f"# Notes on topic number {index}\n\n{body} This is note {index} of the series, "
        f"written for **careful** readers who like [good links](https://example.com/{index}).\n\n"
        f"## Details\n\n{other} In part {index} we go further and measure everything twice.\n\n"
        f"```python\ndef step_{index}(x):\n    return x * {index}\n```\n{extra}"
    )


def raw(author: Author, url: str, content: str, **fields) -> RawDocument:
    defaults = {
        "platform": Platform.WEB,
        "category": Category.ARTICLES,
        "title": url.rsplit("/", 1)[-1],
        "published_at": datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=len(url)),
    }
    defaults.update(fields)
    return RawDocument(
        source_url=url, author_id=author.id, author_name=author.full_name, content=content, **defaults
    )


def seed(settings: Settings, documents: list[RawDocument]) -> None:
    from twinops.infra.documents import AuthorRepository, DocumentRepository
    from twinops.infra.mongo import connect

    db = connect(settings)
    authors, warehouse = AuthorRepository(db), DocumentRepository(db)
    for author in {Author(full_name=d.author_name) for d in documents}:
        authors.upsert(author)
    for document in documents:
        warehouse.upsert(document, run_id="test")


@pytest.fixture
def minilm(bundled_models_dir: Path) -> Path:
    return bundled_models_dir / "all-minilm-l6-v2"


@pytest.fixture
def feature_settings(mongo_settings: Settings, minilm: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Warehouse on the real wire server, Qdrant local under the test's home, real MiniLM."""
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(minilm))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def corpus():
    """The helpers above, as a fixture (tests cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(ADA=ADA, GRACE=GRACE, article=article, raw=raw, seed=seed)
