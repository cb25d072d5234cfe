"""New collections carry the replication factor the settings ask for (prod's Qdrant cluster: 2)."""

from __future__ import annotations

from qdrant_client import QdrantClient

from twinops.features.vector_store import VectorStore
from twinops.settings import Settings


class RecordingClient(QdrantClient):
    """Qdrant in memory, keeping the arguments of each create_collection (local mode drops the
    cluster-only ones, which a Qdrant cluster applies)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.created: dict[str, dict] = {}

    def create_collection(self, collection_name, **kwargs):
        self.created[collection_name] = kwargs
        return super().create_collection(collection_name, **kwargs)


def test_collections_are_created_with_the_settings_replication_factor(monkeypatch) -> None:
    monkeypatch.setenv("TWINOPS_QDRANT_REPLICATION_FACTOR", "2")
    client = RecordingClient()
    store = VectorStore(client, replication_factor=Settings().qdrant_replication_factor)
    target = store.plan("minilm", "v1", 4, embedder="minilm")
    store.ensure(target)
    assert {name: kwargs["replication_factor"] for name, kwargs in client.created.items()} == {
        target.chunks: 2,
        target.documents: 2,
    }


def test_by_default_one_copy() -> None:
    assert Settings().qdrant_replication_factor == 1
    client = RecordingClient()
    store = VectorStore(client)
    store.ensure(store.plan("minilm", "v1", 4, embedder="minilm"))
    assert {kwargs["replication_factor"] for kwargs in client.created.values()} == {1}
