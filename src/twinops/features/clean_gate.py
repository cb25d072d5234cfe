"""Stage 1: read changed warehouse documents, clean them and run every quality gate.

Reads only through ``DocumentRepository.changed_since``/``ids``. Writes nothing but new PII vault
mappings (so that placeholders in later stages always resolve); the gate outcome goes to the next
stage as a ``GateResult``.
"""

from __future__ import annotations

from pathlib import Path

from pymongo.database import Database

from twinops.domain.documents import Author, CleanedDocument, DocumentOrigin, RawDocument, WritingOrigin
from twinops.domain.progress import ProgressCallback
from twinops.domain.versions import DatasetKind
from twinops.errors import NotFound
from twinops.features import gates
from twinops.features.cleaning import clean_text, clean_title
from twinops.features.decontam import Decontaminator, read_golden_jsonl
from twinops.features.dedup import Deduplicator, signature_bytes, sketch_from_bytes
from twinops.features.embedding import embedder_slug
from twinops.features.gates import Reason, Rejection
from twinops.features.jobs import FeatureJob, GateConfig
from twinops.features.pii import PiiVault, find_pii, redaction_placeholder, replace_pii
from twinops.features.results import DocumentDecision, GateResult
from twinops.features.state import ALL_AUTHORS, FeatureStateRepository
from twinops.features.vector_store import CHUNKS_ALIAS, collection_name
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.documents import AuthorRepository, DocumentRepository
from twinops.infra.mongo import warehouse_errors
from twinops.settings import Settings

# Default of ``live_collection``: ask Qdrant (None is a real answer: no alias yet).
LOOK_UP = "<look up>"


def resolve_author(db: Database, name: str) -> Author:
    """The author called ``name``; one line naming the known authors when there is none."""
    found = AuthorRepository(db).find_by_name(name)
    author = found or Author(full_name=name)
    if found is None and DocumentRepository(db).count(author_id=author.id) == 0:
        known = ", ".join(a.full_name for a in AuthorRepository(db).all()[:10]) or "none yet"
        raise NotFound(
            f"author {name!r} has no documents in the warehouse (known: {known}): check --author "
            "or collect with `twinops etl` first"
        )
    return author


def _golden(config: GateConfig, db: Database) -> tuple[Decontaminator | None, str | None]:
    texts: list[str] = []
    canary = version_id = None
    if config.golden_version:
        repository = DatasetVersionRepository(db)
        if config.golden_version == "latest":
            version = repository.latest(DatasetKind.GOLDEN)
            if version is None:
                raise NotFound(
                    "gates.golden_version is 'latest' but no golden dataset exists: build one first"
                )
        else:
            version = repository.get(config.golden_version)
        version_id, canary = version.id, version.config.get("canary")
        texts += read_golden_jsonl(Path(version.uri or "") / "test.jsonl")
    if config.golden_path:
        texts += read_golden_jsonl(config.golden_path)
    if not texts and not canary:
        return None, version_id
    return Decontaminator(texts, config, canary=canary), version_id


def _redact(text: str, config: GateConfig, vault: PiiVault | None) -> tuple[str, dict[str, int]]:
    matches = find_pii(text, region=config.phone_region)
    counts: dict[str, int] = {}
    for match in matches:
        counts[match.kind.value] = counts.get(match.kind.value, 0) + 1
    if not matches or config.pii_mode in ("off", "reject"):
        return text, counts
    placeholder = vault.token_for if (config.pii_mode == "vault" and vault) else redaction_placeholder
    return replace_pii(text, matches, placeholder), counts


def _decision(raw: RawDocument, **fields) -> DocumentDecision:
    return DocumentDecision(**DocumentOrigin.fields_of(raw), source_content_hash=raw.content_hash, **fields)


def gate_document(
    raw: RawDocument,
    job: FeatureJob,
    *,
    vault: PiiVault | None,
    dedup: Deduplicator,
    decontaminator: Decontaminator | None,
) -> DocumentDecision:
    """Clean ``raw`` and run the gates in order; the first failing gate is the reason."""
    config = job.gates

    def rejected(rejection: Rejection, **extra) -> DocumentDecision:
        return _decision(raw, kept=False, reason=rejection.reason.value, detail=rejection.detail, **extra)

    if failure := gates.check_raw(raw.content, config):
        return rejected(failure)
    content = clean_text(raw.content, raw.category, job.cleaning)
    title = clean_title(raw.title, job.cleaning)
    failure, language = gates.check_cleaned(content, raw.category, config)
    if failure:
        return rejected(failure)
    pii: dict[str, int] = {}
    if config.pii_mode != "off":
        title, title_pii = _redact(title, config, vault)
        content, pii = _redact(content, config, vault)
        for kind, count in title_pii.items():
            pii[kind] = pii.get(kind, 0) + count
        if pii and config.pii_mode == "reject":
            found = ", ".join(f"{count} {kind}" for kind, count in sorted(pii.items()))
            return rejected(Rejection(reason=Reason.PII, detail=f"contains {found}"), pii=pii)
    if decontaminator and (failure := decontaminator.check(content)):
        return rejected(failure, pii=pii)
    failure, exact_hash, sketch = dedup.check(raw.id, content)
    if failure:
        return rejected(failure, pii=pii)
    cleaned = CleanedDocument(
        **WritingOrigin.fields_of(raw),
        title=title,
        content=content,
        language=language,
        source_content_hash=raw.content_hash,
    )
    return _decision(
        raw, kept=True, cleaned=cleaned, exact_hash=exact_hash, minhash=signature_bytes(sketch), pii=pii
    )


@warehouse_errors()  # a warehouse gone mid-stage: one line, and the next run redoes it
def clean_and_gate(
    job: FeatureJob,
    settings: Settings,
    *,
    db: Database | None = None,
    live_collection: str | None = LOOK_UP,
    on_progress: ProgressCallback | None = None,
) -> GateResult:
    """Stage 1 of ``run_features``: gate outcome for every document changed since the last run.

    ``live_collection`` is what the ``twin_chunks`` alias points at (the runner passes it; by
    default this stage looks it up in Qdrant). A new embedder means new collections, which must hold
    every author: the scope then widens to all documents.
    """
    from twinops.infra.mongo import connect
    from twinops.models.loaders import embedder_identity

    db = db if db is not None else connect(settings)
    embedder_id, embedder_version = embedder_identity(settings)
    decontaminator, golden_id = _golden(job.gates, db)
    fingerprint = job.fingerprint(embedder_id, embedder_version) + (f":{golden_id}" if golden_id else "")
    if live_collection == LOOK_UP:
        live_collection = _live_chunks_collection(settings)
    expected = collection_name(CHUNKS_ALIAS, embedder_slug(embedder_id), embedder_version)

    author = resolve_author(db, job.author) if job.author else None
    author_id = author.id if author else None
    state = FeatureStateRepository(db)
    run = state.run_state(author_id or ALL_AUTHORS) or state.run_state(ALL_AUTHORS)
    full, why = job.full, "--full" if job.full else ""
    if live_collection != expected:
        full, author_id, author = True, None, None
        why = f"new vector collection {expected} (embedder {embedder_id}): rebuilding every author"
    elif run is None or run.fingerprint != fingerprint:
        full, why = True, "first run" if run is None else "cleaning/gate/chunker/embedder config changed"
    scope = author_id or ALL_AUTHORS

    warehouse = DocumentRepository(db)
    since = None if full or run is None else run.watermark
    candidates = list(warehouse.changed_since(since, author_id=author_id))
    watermark = max((stored.updated_at for stored in candidates), default=since)
    previous = state.get_many([stored.document.id for stored in candidates])
    todo: list[RawDocument] = []
    unchanged = 0
    for stored in candidates:
        before = previous.get(stored.document.id)
        if (
            not full
            and before is not None
            and before.source_content_hash == stored.document.content_hash
            and before.fingerprint == fingerprint
        ):
            unchanged += 1
            continue
        todo.append(stored.document)
    # Earliest first, so the original (not its later copy) survives dedup.
    todo.sort(key=lambda d: ((d.published_at or d.fetched_at).isoformat(), d.source_url))

    deleted = sorted(state.ids(author_id) - warehouse.ids(author_id=author_id))
    dedups: dict[str, Deduplicator] = {}
    # Documents being redone or gone from the warehouse are no one's original any more.
    reprocessed = {d.id for d in todo} | set(deleted)
    for author_key in sorted({d.author_id for d in todo}):
        dedup = dedups[author_key] = Deduplicator(job.gates)
        for kept in state.iter_scope(author_key, status="kept"):
            if kept.document_id not in reprocessed and kept.exact_hash and kept.minhash:
                sketch = sketch_from_bytes(kept.minhash, job.gates.minhash_permutations)
                dedup.remember(kept.document_id, kept.exact_hash, sketch)

    vault = PiiVault(db) if job.gates.pii_mode == "vault" else None
    decisions = []
    for index, raw in enumerate(todo, start=1):
        decisions.append(
            gate_document(raw, job, vault=vault, dedup=dedups[raw.author_id], decontaminator=decontaminator)
        )
        if on_progress:
            on_progress("clean + gate", index, len(todo))
    if vault:
        vault.flush()

    return GateResult(
        scope=scope,
        author_id=author_id,
        author_name=author.full_name if author else None,
        full=full,
        full_reason=why,
        fingerprint=fingerprint,
        embedder_id=embedder_id,
        embedder_version=embedder_version,
        watermark=watermark,
        golden_version_id=golden_id,
        decisions=decisions,
        deleted_ids=deleted,
        unchanged=unchanged,
    )


def _live_chunks_collection(settings: Settings) -> str | None:
    from twinops.features.vector_store import VectorStore
    from twinops.infra.qdrant import open_qdrant

    with open_qdrant(settings) as client:
        return VectorStore(client).alias_target(CHUNKS_ALIAS)
