"""End to end on the real wire server, Qdrant local mode and the real MiniLM embedder.

One planted corpus: good articles, an exact and a near duplicate, PII, German, empty, binary,
over-size and too-short documents. Checks the gate reasons, the contract-2 artifact, the
contract-3 payload, author-filtered search, incremental re-runs, deletes and lineage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.domain import Category, Chunk, CleanedDocument, Platform
from twinops.features import FeatureJob, run_features
from twinops.features.cleaning import normalize_query
from twinops.features.jobs import GateConfig
from twinops.features.lineage import lineage
from twinops.features.pii import PiiVault
from twinops.features.vector_store import CHUNKS_ALIAS, DOCUMENTS_ALIAS, VectorStore
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.documents import DocumentRepository
from twinops.infra.mongo import connect
from twinops.infra.qdrant import open_qdrant
from twinops.models.loaders import load_embedder

CONTRACT_3_KEYS = {
    "chunk_id",
    "document_id",
    "author_id",
    "author_name",
    "category",
    "platform",
    "source_url",
    "published_at",
    "content_hash",
    "chunk_index",
    "content",
    "embedding_model_id",
    "embedding_model_version",
}
GERMAN = (
    "Vektordatenbanken speichern Einbettungen, damit die Suche Textstellen nach ihrer Bedeutung findet. "
    "Die Wahl des Abstandsmaßes ist wichtig, denn die Kosinusähnlichkeit ignoriert die Länge der Vektoren, "
    "während das Skalarprodukt sie berücksichtigt. Deshalb normalisieren wir alle Vektoren vor dem Speichern."
)
PII_POST = (
    "Shipping the retrieval service today was a team effort and I learned a lot about latency budgets. "
    "Questions about the rollout? Write to ada.lovelace@example.org or call +1 415-555-2671 any time this "
    "week. The staging key sk-live1234567890abcdefABCDEF leaked in a screenshot, so it is rotated now, and "
    "the test card 4111 1111 1111 1111 no longer works against 203.0.113.7 either."
)
REPOSITORY = (
    "# twin-tools\n\nSmall helpers for the twin pipeline, written to be read and reused by anyone.\n\n"
    "```python\nimport math\n\n\ndef cosine(a, b):\n    dot = sum(x * y for x, y in zip(a, b))\n"
    "    return dot / (math.hypot(*a) * math.hypot(*b))\n```\n\nThe cosine helper above is used by "
    "the evaluation scripts and by the notebook that compares embedders side by side."
)


def _corpus(c) -> list:
    ada, grace = c.ADA, c.GRACE
    near = c.article(1).replace("processed twice", "handled two times") + "\nOne more closing line."
    return [
        *[c.raw(ada, f"https://ada.dev/post-{i}", c.article(i)) for i in range(4)],
        c.raw(ada, "https://mirror.example/copy-0", "  " + c.article(0).upper().replace("\n\n", "\n\n\n")),
        c.raw(ada, "https://ada.dev/post-1-again", near),
        c.raw(
            ada, "https://linkedin.com/ada/1", PII_POST, platform=Platform.LINKEDIN, category=Category.POSTS
        ),
        c.raw(ada, "https://ada.dev/de/vektoren", GERMAN),
        c.raw(ada, "https://ada.dev/empty", "   \n  "),
        c.raw(ada, "https://ada.dev/binary", "PK\x03\x04\x00\x00\x08\x00" * 40 + "readme"),
        c.raw(ada, "https://ada.dev/huge", c.article(2) + " filler words" * 3000),
        c.raw(
            ada,
            "https://linkedin.com/ada/2",
            "Great day!",
            platform=Platform.LINKEDIN,
            category=Category.POSTS,
        ),
        c.raw(grace, "https://grace.dev/a", c.article(4)),
        c.raw(grace, "https://grace.dev/b", c.article(5)),
        c.raw(
            grace,
            "https://github.com/grace/twin-tools",
            REPOSITORY,
            platform=Platform.GIT,
            category=Category.REPOSITORIES,
        ),
    ]


def _read(path: Path, model):
    """Rows of a contract-2 JSONL file; computed fields (id, content_hash) are checked, then dropped."""
    rows = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        computed = {key: data.pop(key) for key in ("id", "content_hash") if key in data}
        row = model.model_validate(data)
        assert all(getattr(row, key) == value for key, value in computed.items())
        rows.append(row)
    return rows


def _job(**overrides) -> FeatureJob:
    return FeatureJob(gates=GateConfig(max_bytes=20_000), materialize_feast=False, **overrides)


def _snapshot(settings) -> dict:
    """Every collection the feature side writes, plus the Qdrant points and artifact folders."""
    db = connect(settings)
    names = ("feature_documents", "feature_runs", "dataset_versions", "pii_vault")
    snapshot: dict = {name: sorted(map(str, db[name].find({}))) for name in names}
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        snapshot["chunks"] = sorted(store.point_ids(CHUNKS_ALIAS))
        snapshot["documents"] = sorted(store.point_ids(DOCUMENTS_ALIAS))
    features = settings.home / "features"
    snapshot["artifacts"] = sorted((p.name, p.stat().st_mtime_ns) for p in features.rglob("*"))
    return snapshot


@pytest.mark.slow
def test_pipeline_end_to_end(feature_settings, corpus) -> None:
    settings = feature_settings
    corpus.seed(settings, _corpus(corpus))
    summary = run_features(_job(), settings)

    assert summary.gate.rejected == {
        "binary_residue": 1,
        "empty": 1,
        "exact_duplicate": 1,
        "language": 1,
        "near_duplicate": 1,
        "oversize": 1,
        "too_short": 1,
    }
    assert summary.gate.kept == 8 and summary.documents_total == 8
    assert summary.gate.pii == {"API_KEY": 1, "CREDIT_CARD": 1, "EMAIL": 1, "IP_ADDRESS": 1, "PHONE": 1}
    assert summary.new_version and summary.alias_switched and summary.full
    assert summary.chunks_collection.startswith("twin_chunks__all-minilm-l6-v2__")

    # Contract 2: the artifact folder.
    folder = Path(summary.artifact_dir)
    assert folder == settings.home / "features" / summary.version_id
    chunks = _read(folder / "chunks.jsonl", Chunk)
    cleaned = _read(folder / "cleaned_documents.jsonl", CleanedDocument)
    assert len(chunks) == summary.chunks_total and len(cleaned) == 8
    assert all(c.token_count <= 200 for c in chunks)
    report = json.loads((folder / "gate_report.json").read_text())
    assert report["current"]["rejected"]["near_duplicate"] == 1
    assert "near_duplicate" in (folder / "report.html").read_text()
    version = DatasetVersionRepository(connect(settings)).get(summary.version_id)
    assert version.kind == "features" and version.uri == str(folder)
    assert version.config["embedder"]["dimension"] == 384

    # PII: placeholders in the features, values only in the vault.
    post = next(d for d in cleaned if d.platform == Platform.LINKEDIN)
    assert "ada.lovelace@example.org" not in post.content and "[EMAIL_" in post.content
    assert "ada.lovelace@example.org" in PiiVault(connect(settings)).detokenize(post.content)
    # Cleaning: Markdown residue gone, code block intact.
    first = next(d for d in cleaned if d.source_url == "https://ada.dev/post-0")
    assert "**" not in first.content and "](https" not in first.content
    assert "```python\ndef step_0(x):\n    return x * 0\n```" in first.content

    # Contract 3: payload keys, alias, author filter.
    embedder = load_embedder(settings)
    query = embedder.encode(normalize_query("  Kafka **consumer** offsets & rebalancing?  "))
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        point = client.retrieve(CHUNKS_ALIAS, ids=[chunks[0].id], with_payload=True)[0]
        assert set(point.payload) >= CONTRACT_3_KEYS
        hits = store.search(query, author_id=corpus.GRACE.id, limit=20)
        assert hits and {hit.author_id for hit in hits} == {corpus.GRACE.id}
        ada_hits = store.search(query, author_id=corpus.ADA.id, limit=3)
        assert {hit.author_id for hit in ada_hits} == {corpus.ADA.id}
        assert "Kafka" in ada_hits[0].content
        assert ada_hits[0].to_chunk().id == ada_hits[0].chunk_id
        assert store.count(DOCUMENTS_ALIAS) == 8

    # Lineage: chunk → ... → source URL; dataset → source URLs.
    chain = lineage(ada_hits[0].chunk_id, settings)
    assert [s.kind for s in chain.steps] == [
        "chunk",
        "feature_version",
        "cleaned_document",
        "raw_document",
        "source",
    ]
    assert chain.source_urls == [ada_hits[0].source_url]
    assert "https://grace.dev/a" in lineage(summary.version_id, settings).source_urls

    # A re-run with nothing new writes nothing.
    before = _snapshot(settings)
    again = run_features(_job(), settings)
    assert not again.wrote_anything and again.version_id == summary.version_id and not again.full
    assert _snapshot(settings) == before

    # Incremental: one document changes, one is gone from its source (the ETL marks it deleted).
    corpus.seed(
        settings, [corpus.raw(corpus.ADA, "https://ada.dev/post-2", corpus.article(2, extra="\nP.S. v2"))]
    )
    gone = corpus.raw(corpus.GRACE, "https://grace.dev/b", "")
    assert DocumentRepository(connect(settings)).mark_deleted({gone.id}) == 1
    third = run_features(_job(), settings)
    assert third.gate.processed == 1 and third.gate.deleted == 1 and not third.full
    assert third.new_version and third.version_id != summary.version_id
    assert third.documents_total == 7
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        assert store.count(DOCUMENTS_ALIAS) == 7
        remaining = store.point_ids(CHUNKS_ALIAS)
    assert not any(c.id in remaining for c in chunks if c.document_id == gone.id)
    latest = _read(Path(third.artifact_dir) / "chunks.jsonl", Chunk)
    assert {c.id for c in latest} == remaining


@pytest.mark.slow
def test_stages_run_separately_through_a_gate_result_file(feature_settings, corpus, tmp_path) -> None:
    """The KFP components' path: clean_and_gate → file → chunk_embed_load → materialize."""
    from twinops.features import GateResult, chunk_embed_load, clean_and_gate

    settings = feature_settings
    corpus.seed(settings, [corpus.raw(corpus.ADA, "https://ada.dev/p", PII_POST + " " + corpus.article(3))])
    job = FeatureJob(materialize_feast=False)
    gate = clean_and_gate(job, settings)
    assert gate.full and gate.counts.kept == 1 and gate.decisions[0].minhash
    restored = GateResult.load(gate.save(tmp_path / "gate" / "gate_result.json"))
    assert restored == gate
    summary = chunk_embed_load(job, settings, restored)
    assert summary.documents_total == 1 and summary.chunks_upserted == summary.chunks_total > 0
    # A second gate pass sees nothing new.
    assert not clean_and_gate(job, settings).has_changes


def test_decontamination_against_the_latest_golden_version(feature_settings, corpus, tmp_path) -> None:
    from twinops.domain import DatasetKind, DatasetVersion
    from twinops.features import clean_and_gate

    settings = feature_settings
    leaked, clean = corpus.article(0), corpus.article(3)
    corpus.seed(
        settings,
        [
            corpus.raw(corpus.ADA, "https://ada.dev/leaked", leaked),
            corpus.raw(corpus.ADA, "https://ada.dev/ok", clean),
        ],
    )
    folder = tmp_path / "golden"
    folder.mkdir()
    reference = leaked.split("\n\n")[1]  # the first paragraph of the leaked article
    (folder / "test.jsonl").write_text(
        json.dumps({"instruction": "Summarize.", "reference": reference}) + "\n"
    )
    golden = DatasetVersion(
        kind=DatasetKind.GOLDEN, name="golden", inputs_hash="x", config={"canary": "c4n4ry"}, uri=str(folder)
    )
    DatasetVersionRepository(connect(settings)).save(golden)

    gate = clean_and_gate(FeatureJob(gates=GateConfig(golden_version="latest")), settings)
    outcome = {d.source_url: d.reason for d in gate.decisions}
    assert outcome == {"https://ada.dev/leaked": "contaminated", "https://ada.dev/ok": None}
    assert gate.golden_version_id == golden.id and gate.fingerprint.endswith(golden.id)
