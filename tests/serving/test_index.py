"""LiveIndex: serves a copy of the collection behind ``twin_chunks`` from a real local Qdrant folder,
follows the alias when a feature run moves it, and never holds the folder a feature run needs.

Vectors are hand-made 4-d unit vectors so that which chunk is nearest is known without a model.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from twinops.domain import Category, Platform
from twinops.domain.documents import Chunk, EmbeddedChunk
from twinops.errors import NotFound, ServiceUnavailable
from twinops.features.vector_store import VectorStore
from twinops.infra.qdrant import open_qdrant
from twinops.serving.index import LiveIndex
from twinops.settings import Settings

AXES = {
    "x": [1.0, 0.0, 0.0, 0.0],
    "y": [0.0, 1.0, 0.0, 0.0],
    "z": [0.0, 0.0, 1.0, 0.0],
    "w": [0.0, 0.0, 0.0, 1.0],
}


def _chunk(author: str, text: str, axis: str, index: int = 0) -> EmbeddedChunk:
    chunk = Chunk(
        document_id=f"doc-{author}-{text}",
        author_id=author,
        author_name=author.title(),
        platform=Platform.WEB,
        category=Category.ARTICLES,
        source_url=f"https://example.com/{author}/{text}",
        chunk_index=index,
        content=text,
        token_count=1,
        document_content_hash=f"hash-{text}",
    )
    return EmbeddedChunk(
        chunk=chunk, embedding=AXES[axis], embedding_model_id="axes", embedding_model_version="1"
    )


def plant(settings: Settings, version: str, chunks: list[EmbeddedChunk], *, move_alias: bool = True) -> str:
    """Write ``chunks`` into the collection of embedder version ``version``, as a feature run does."""
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        target = store.plan("axes", version, 4, embedder="axes")
        if not store.client.collection_exists(target.chunks):
            store.ensure(target)
        store.upsert_chunks(target.chunks, chunks)
        if move_alias:
            store.switch_aliases(target)
        return target.chunks


@pytest.fixture
def first_version(settings: Settings) -> str:
    return plant(
        settings,
        "v1",
        [_chunk("ada", "alpha", "x"), _chunk("ada", "beta", "y"), _chunk("grace", "gamma", "z")],
    )


@contextmanager
def folder_held(settings: Settings) -> Iterator[None]:
    """Another process holding the Qdrant folder, as a running feature step does.

    Local mode's lock is per process, so only a second process can show the folder being busy.
    """
    code = (
        "import sys\nfrom qdrant_client import QdrantClient\n"
        "client = QdrantClient(path=sys.argv[1])\nprint('held', flush=True)\n"
        "sys.stdin.readline()\nclient.close()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(settings.qdrant_local_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.communicate("\n", timeout=60)


def test_search_serves_a_copy_and_leaves_the_folder_free(settings: Settings, first_version: str) -> None:
    index = LiveIndex(settings)
    hits = index.search(AXES["y"], limit=2)
    assert hits[0].content == "beta" and hits[0].score == pytest.approx(1.0)
    assert index.collection == first_version and index.version.points == 3
    assert "3 points" in str(index.version)
    # The folder is free again: a feature run can open it while the index keeps serving.
    with open_qdrant(settings) as client:
        assert VectorStore(client).count() == 3
    assert [hit.content for hit in index.search(AXES["z"], limit=1)] == ["gamma"]


def test_filters_narrow_the_search(settings: Settings, first_version: str) -> None:
    index = LiveIndex(settings)
    assert {hit.author_id for hit in index.search(AXES["z"], limit=5, author_id="ada")} == {"ada"}
    assert index.search(AXES["z"], limit=5, platform="git") == []
    assert len(index.search(AXES["z"], limit=5, category="articles")) == 3


def test_a_moved_alias_is_picked_up_without_a_new_index(settings: Settings, first_version: str) -> None:
    index = LiveIndex(settings)
    assert index.search(AXES["x"], limit=1)[0].content == "alpha"
    assert index.refresh() is False  # nothing changed

    second = plant(settings, "v2", [_chunk("ada", "delta", "x"), _chunk("grace", "epsilon", "w")])
    assert index.search(AXES["x"], limit=1)[0].content == "alpha"  # no interval: the copy stays
    assert index.refresh() is True
    assert index.collection == second != first_version
    assert [hit.content for hit in index.search(AXES["x"], limit=5)] == ["delta", "epsilon"]

    # Points added to the live collection reload too; with an interval the search itself checks.
    lazy = LiveIndex(settings, refresh_interval=0)
    assert lazy.search(AXES["y"], limit=1)[0].content != "zeta"
    plant(settings, "v2", [_chunk("ada", "zeta", "y")])
    assert lazy.search(AXES["y"], limit=1)[0].content == "zeta"
    assert lazy.version.points == 3


def test_keeps_serving_while_another_process_holds_the_folder(settings: Settings, first_version: str) -> None:
    index = LiveIndex(settings, refresh_interval=0)
    assert index.search(AXES["x"], limit=1)[0].content == "alpha"

    with folder_held(settings):
        assert index.refresh() is False
        assert "in use" in index.last_error
        assert index.search(AXES["z"], limit=1)[0].content == "gamma"  # lazy refresh skipped quietly
        assert index.collection == first_version

    second = plant(settings, "v2", [_chunk("ada", "delta", "x")])
    assert index.search(AXES["x"], limit=1)[0].content == "delta"
    assert index.collection == second and index.last_error is None


def test_without_a_copy_a_busy_folder_is_one_clear_error(settings: Settings, first_version: str) -> None:
    index = LiveIndex(settings)
    with folder_held(settings), pytest.raises(ServiceUnavailable, match="in use by another process"):
        index.search(AXES["x"], limit=1)


def test_no_collection_says_to_run_features(settings: Settings) -> None:
    with pytest.raises(NotFound, match="run `twinops features` first"):
        LiveIndex(settings).search(AXES["x"], limit=1)
