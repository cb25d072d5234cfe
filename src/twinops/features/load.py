"""Stage 2: chunk the kept documents, embed the chunks, load Qdrant, commit state and version.

Order of writes (so nothing is ever half-written for a reader): everything is chunked and
embedded in memory first; then Qdrant (idempotent upserts by UUID, deletes of stale points);
then the aliases move if this run built new collections; then the feature state rows; then
the artifact folder and DatasetVersion; the run watermark last. A crash anywhere leaves
the documents unprocessed in the state, and the next run redoes them with the same ids.
"""

from __future__ import annotations

import time

import numpy as np
from pymongo.database import Database

from twinops.domain.documents import Chunk
from twinops.domain.progress import ProgressCallback
from twinops.errors import ConfigError
from twinops.features.artifact import build_version, gate_report, write_artifact
from twinops.features.chunking import Chunker
from twinops.features.embedding import Embedder, embed_chunks, open_embedder
from twinops.features.jobs import FeatureJob
from twinops.features.results import FeatureRunSummary, GateOutcome, GateResult
from twinops.features.state import ALL_AUTHORS, DocumentState, FeatureStateRepository, RunState
from twinops.features.vector_store import CollectionTarget, VectorStore, document_payload
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.mongo import warehouse_errors
from twinops.settings import Settings


def _state_rows(gate: GateResult, chunks: dict[str, list[Chunk]]) -> list[DocumentState]:
    rows = []
    for decision in gate.decisions:
        rows.append(
            DocumentState(
                **GateOutcome.fields_of(decision),
                fingerprint=gate.fingerprint,
                status="kept" if decision.kept else "rejected",
                chunks=chunks.get(decision.document_id, []),
            )
        )
    return rows


def _load_qdrant(
    store: VectorStore,
    target: CollectionTarget,
    *,
    embedder: Embedder,
    gate: GateResult,
    chunks: dict[str, list[Chunk]],
    previous: dict[str, DocumentState],
    job: FeatureJob,
    on_progress: ProgressCallback | None,
) -> tuple[int, int]:
    """Embed and upsert; delete stale points. Returns (chunks upserted, chunks deleted)."""
    all_chunks = [chunk for decision in gate.decisions for chunk in chunks.get(decision.document_id, [])]
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress:
            on_progress("embed", done, len(all_chunks))

    embedded = embed_chunks(embedder, all_chunks, batch_size=job.embedding.batch_size, on_progress=advance)
    vectors: dict[str, list[np.ndarray]] = {}
    for item in embedded:
        vectors.setdefault(item.chunk.document_id, []).append(np.asarray(item.embedding))
    document_rows = []
    for decision in gate.decisions:
        if decision.kept and decision.cleaned and decision.document_id in vectors:
            mean = np.mean(vectors[decision.document_id], axis=0)
            mean = mean / (np.linalg.norm(mean) or 1.0)
            payload = document_payload(
                decision.cleaned, len(chunks[decision.document_id]), embedder.model_id, embedder.version
            )
            document_rows.append((decision.cleaned, mean.tolist(), payload))

    upserted = store.upsert_chunks(target.chunks, embedded)
    store.upsert_documents(target.documents, document_rows)
    if on_progress:
        on_progress("load qdrant", upserted, upserted)

    stale_chunks: set[str] = set()
    stale_documents: set[str] = set()
    for decision in gate.decisions:
        before = previous.get(decision.document_id)
        if before:
            stale_chunks |= set(before.chunk_ids) - {c.id for c in chunks.get(decision.document_id, [])}
        if not decision.kept or decision.document_id not in vectors:
            stale_documents.add(decision.document_id)
    for document_id in gate.deleted_ids:
        before = previous.get(document_id)
        stale_chunks |= set(before.chunk_ids) if before else set()
        stale_documents.add(document_id)
    deleted = store.delete(target.chunks, stale_chunks) if stale_chunks else 0
    if stale_documents:
        store.delete(target.documents, stale_documents)
    return upserted, deleted


@warehouse_errors()  # a warehouse gone mid-stage: one line, and the next run redoes it
def chunk_embed_load(
    job: FeatureJob,
    settings: Settings,
    gate: GateResult,
    *,
    db: Database | None = None,
    client=None,
    embedder: Embedder | None = None,
    on_progress: ProgressCallback | None = None,
) -> FeatureRunSummary:
    """Stage 2 of ``run_features``: from a ``GateResult`` to Qdrant, state and a DatasetVersion."""
    from twinops.infra.mongo import connect
    from twinops.infra.qdrant import open_qdrant

    started = time.perf_counter()
    db = db if db is not None else connect(settings)
    embedder = embedder or open_embedder(settings)
    if (embedder.model_id, embedder.version) != (gate.embedder_id, gate.embedder_version):
        raise ConfigError(
            f"the embedder changed since clean-and-gate ({gate.embedder_id}@{gate.embedder_version} → "
            f"{embedder.model_id}@{embedder.version}): run clean-and-gate again"
        )
    chunker = Chunker(embedder.tokenizer, job.chunking, max_seq_length=embedder.max_seq_length)
    state = FeatureStateRepository(db)

    if client is None:
        with open_qdrant(settings) as opened:
            return chunk_embed_load(
                job, settings, gate, db=db, client=opened, embedder=embedder, on_progress=on_progress
            )

    store = VectorStore(client, replication_factor=settings.qdrant_replication_factor)
    # Checked before any write: a collection whose size disagrees with the embedder stops here.
    target = store.plan(embedder.slug, embedder.version, embedder.dimension, embedder=embedder.model_id)
    if not target.live and not (gate.full and gate.scope == ALL_AUTHORS):
        raise ConfigError(
            f"collection {target.chunks} is not live and this gate result is incremental: run the "
            "features again (a new embedder needs a full run over every author)"
        )
    store.ensure(target)

    chunks: dict[str, list[Chunk]] = {}
    kept = [d for d in gate.decisions if d.kept and d.cleaned]
    for index, decision in enumerate(kept, start=1):
        chunks[decision.document_id] = chunker.chunk(decision.cleaned)
        if on_progress:
            on_progress("chunk", index, len(kept))

    previous = state.get_many([d.document_id for d in gate.decisions] + gate.deleted_ids)
    upserted = deleted = 0
    if gate.has_changes:
        upserted, deleted = _load_qdrant(
            store,
            target,
            embedder=embedder,
            gate=gate,
            chunks=chunks,
            previous=previous,
            job=job,
            on_progress=on_progress,
        )
    switched = False
    if not target.live:
        store.switch_aliases(target)
        switched = True

    if gate.has_changes:
        state.save_many(_state_rows(gate, chunks))
        state.delete_many(gate.deleted_ids)

    rows = list(state.iter_scope(gate.author_id))
    config = {
        "scope": {"author_id": gate.author_id, "author_name": gate.author_name},
        "fingerprint": gate.fingerprint,
        **job.processing_config(),
        "embedder": {"id": embedder.model_id, "version": embedder.version, "dimension": embedder.dimension},
        "collections": {"chunks": target.chunks, "documents": target.documents},
    }
    parents = (gate.golden_version_id,) if gate.golden_version_id else ()
    version = build_version(name=job.name, rows=rows, config=config, parents=parents, settings=settings)
    versions = DatasetVersionRepository(db)
    scope_label = gate.author_name or "all authors"
    report = gate_report(version.id, scope_label, gate.counts, rows)
    folder = write_artifact(version, rows, report)
    new_version = versions.save(version)

    run = RunState(
        scope=gate.scope,
        watermark=gate.watermark,
        fingerprint=gate.fingerprint,
        chunks_collection=target.chunks,
        version_id=version.id,
    )
    before = state.run_state(gate.scope)
    if before is None or before.model_dump(exclude={"finished_at"}) != run.model_dump(
        exclude={"finished_at"}
    ):
        state.save_run_state(run)

    kept_rows = [row for row in rows if row.status == "kept"]
    return FeatureRunSummary(
        version_id=version.id,
        artifact_dir=str(folder),
        new_version=new_version,
        scope=scope_label,
        full=gate.full,
        full_reason=gate.full_reason,
        gate=gate.counts,
        chunks_upserted=upserted,
        chunks_deleted=deleted,
        documents_total=len(kept_rows),
        chunks_total=sum(len(row.chunks) for row in kept_rows),
        chunks_collection=target.chunks,
        documents_collection=target.documents,
        alias_switched=switched,
        embedding_model_id=embedder.model_id,
        embedding_model_version=embedder.version,
        report_html=str(folder / "report.html"),
        seconds=round(time.perf_counter() - started, 3),
    )
