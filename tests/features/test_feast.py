"""Feast: apply + materialize from the feature state; sqlite online store and a real Redis.

The Redis test starts Debian's ``redis-server`` on a free 127.0.0.1 port in a temporary folder
(`make system-deps` installs it) and stops it afterwards.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from twinops.domain import Category, Chunk, CleanedDocument, Platform
from twinops.features.feast_store import (
    author_context,
    feature_store_yaml,
    materialize,
    online_document_stats,
    redis_connection_string,
    top_topics,
)
from twinops.features.state import DocumentState, FeatureStateRepository
from twinops.infra.mongo import connect
from twinops.settings import get_settings


def _state(author: str, index: int, platform: Platform, text: str) -> DocumentState:
    author_id = f"author-{author}"
    cleaned = CleanedDocument(
        document_id=f"{author}-{index}",
        author_id=author_id,
        author_name=author.title(),
        platform=platform,
        category=Category.ARTICLES,
        source_url=f"https://{author}.dev/{index}",
        title=f"Post {index}",
        content=text,
        language="en",
        published_at=datetime(2025, 1, 1, tzinfo=UTC),
        source_content_hash=f"h{index}",
    )
    chunk = Chunk(
        document_id=cleaned.document_id,
        author_id=author_id,
        author_name=cleaned.author_name,
        platform=platform,
        category=Category.ARTICLES,
        source_url=cleaned.source_url,
        chunk_index=0,
        content=text,
        token_count=len(text.split()),
        document_content_hash=cleaned.content_hash,
    )
    return DocumentState(
        document_id=cleaned.document_id,
        author_id=author_id,
        author_name=cleaned.author_name,
        source_url=cleaned.source_url,
        platform=platform.value,
        source_content_hash=f"h{index}",
        fingerprint="f",
        status="kept",
        cleaned=cleaned,
        chunks=[chunk, chunk.model_copy(update={"chunk_index": 1})],
    )


def _seed_state(settings) -> None:
    FeatureStateRepository(connect(settings)).save_many(
        [
            _state("ada", 1, Platform.MEDIUM, "Kubernetes operators reconcile state. Kubernetes again."),
            _state("ada", 2, Platform.MEDIUM, "Kubernetes controllers and operators watch resources."),
            _state("ada", 3, Platform.LINKEDIN, "Shipping kubernetes operators feels great today."),
            _state("grace", 1, Platform.WEB, "Compilers translate programs into machine code."),
        ]
    )


def _check_online(settings) -> None:
    context = author_context(settings, "author-ada", max_topics=2)
    assert context.startswith("You write as Ada.")
    assert "medium (2)" in context and "linkedin (1)" in context
    assert "Topics: kubernetes, operators." in context
    stats = online_document_stats(settings, ["ada-2", "grace-1"])
    assert stats["chunk_count"] == [2, 2] and stats["platform"] == ["medium", "web"]
    assert stats["language"] == ["en", "en"]


@pytest.mark.slow  # importing feast alone takes ~10 s on 2 cores
def test_sqlite_online_store_and_on_demand_author_context(mongo_settings) -> None:
    _seed_state(mongo_settings)
    summary = materialize(mongo_settings)
    assert summary.online_store == "sqlite" and summary.documents == 4 and summary.authors == 2
    repo = Path(summary.repo_path)
    assert (repo / "definitions.py").exists() and (repo / "data" / "online_store.db").exists()
    _check_online(mongo_settings)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make system-deps` (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.mark.slow
def test_redis_online_store(mongo_settings, redis_server, monkeypatch) -> None:
    monkeypatch.setenv("TWINOPS_FEAST_ONLINE_STORE", "redis")
    monkeypatch.setenv("TWINOPS_REDIS_URL", redis_server)
    get_settings.cache_clear()
    settings = get_settings()
    assert "type: redis" in feature_store_yaml(settings)
    _seed_state(settings)
    summary = materialize(settings)
    assert summary.online_store == "redis"
    import redis

    assert redis.Redis.from_url(redis_server).dbsize() > 0, "features landed in Redis"
    assert not (Path(summary.repo_path) / "data" / "online_store.db").exists()
    _check_online(settings)


def test_redis_url_translation_and_topics() -> None:
    assert redis_connection_string("redis://:pw@cache:6380/2") == "cache:6380,db=2,password=pw"
    assert redis_connection_string("redis://127.0.0.1") == "127.0.0.1:6379"
    assert top_topics(["Rust and Kafka", "rust lifetimes", "Kafka rust"], limit=2) == ["rust", "kafka"]
