"""Changing the embedder: new collections, alias moved when complete, dimensions never mixed.

The second embedder is a tiny random BERT (32-d) with MiniLM's tokenizer, saved as a real
sentence-transformers folder: a different model id, version and vector size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.features import FeatureJob, run_features
from twinops.features.embedding import embedder_slug
from twinops.features.vector_store import CHUNKS_ALIAS, DOCUMENTS_ALIAS, DimensionMismatch, VectorStore
from twinops.infra.mongo import connect
from twinops.infra.qdrant import open_qdrant
from twinops.models.loaders import embedder_identity
from twinops.settings import get_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_embedder(bundled_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("embedders")
    tokenizer = AutoTokenizer.from_pretrained(bundled_models_dir / "all-minilm-l6-v2")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    transformer = models.Transformer(str(root / "hf"), max_seq_length=256)
    target = root / "tiny-bert-embedder"
    SentenceTransformer(modules=[transformer, models.Pooling(32, "mean")], device="cpu").save(str(target))
    return target


def _use_embedder(monkeypatch: pytest.MonkeyPatch, path: Path):
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(path))
    get_settings.cache_clear()
    return get_settings()


def _seed(corpus, settings) -> None:
    documents = [corpus.raw(corpus.ADA, f"https://ada.dev/{i}", corpus.article(i)) for i in range(3)]
    documents.append(corpus.raw(corpus.GRACE, "https://grace.dev/4", corpus.article(4)))
    corpus.seed(settings, documents)


def test_embedder_change_builds_new_collections_and_moves_the_alias(
    feature_settings, corpus, tiny_embedder, monkeypatch
) -> None:
    _seed(corpus, feature_settings)
    first = run_features(FeatureJob(materialize_feast=False), feature_settings)

    settings = _use_embedder(monkeypatch, tiny_embedder)
    # Even a run scoped to one author rebuilds every author into the new collections.
    second = run_features(FeatureJob(author="Ada Lovelace", materialize_feast=False), settings)
    assert second.alias_switched and second.full and second.scope == "all authors"
    assert second.chunks_collection.startswith("twin_chunks__tiny-bert-embedder__")
    assert second.chunks_collection != first.chunks_collection
    assert second.version_id != first.version_id and second.documents_total == 4

    with open_qdrant(settings) as client:
        store = VectorStore(client)
        assert store.alias_target(CHUNKS_ALIAS) == second.chunks_collection
        assert store.alias_target(DOCUMENTS_ALIAS) == second.documents_collection
        assert store.vector_size(CHUNKS_ALIAS) == 32
        # The old collection is complete and untouched (rollback = move the alias back).
        assert store.vector_size(first.chunks_collection) == 384
        assert store.count(first.chunks_collection) == first.chunks_total
        assert store.count(CHUNKS_ALIAS, author_id=corpus.GRACE.id) > 0
        hits = store.search([0.1] * 32, limit=50)
        assert {hit.embedding_model_id for hit in hits} == {str(tiny_embedder)}
        with pytest.raises(DimensionMismatch, match="384-d vectors"):
            store.search([0.1] * 384)


def test_dimension_mismatch_is_refused_before_anything_is_written(
    feature_settings, corpus, tiny_embedder, monkeypatch
) -> None:
    from qdrant_client import models

    _seed(corpus, feature_settings)
    settings = _use_embedder(monkeypatch, tiny_embedder)
    model_id, version = embedder_identity(settings)
    squatter = f"twin_chunks__{embedder_slug(model_id)}__{version}"
    with open_qdrant(settings) as client:
        client.create_collection(squatter, vectors_config=models.VectorParams(size=384, distance="Cosine"))

    with pytest.raises(DimensionMismatch, match=r"holds 384-d vectors but embedder .* makes 32-d"):
        run_features(FeatureJob(materialize_feast=False), settings)

    db = connect(settings)
    for name in ("feature_documents", "feature_runs", "dataset_versions"):
        assert db[name].count_documents({}) == 0, name
    assert not (settings.home / "features").exists()
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        assert store.alias_target(CHUNKS_ALIAS) is None
        assert store.count(squatter) == 0


def test_search_without_features_names_the_fix(settings) -> None:
    from twinops.errors import NotFound

    with open_qdrant(settings) as client, pytest.raises(NotFound, match="run `twinops features`"):
        VectorStore(client).search([0.0] * 384)
