"""Lineage: from a chunk id or a dataset version id back to the source URLs.

A chunk resolves through the feature state (its document, cleaned hash, fingerprint), the
feature DatasetVersion of that fingerprint (cleaning/gate config, chunker, embedder) and the
warehouse row (revision, source hash, URL). A dataset version walks its ``parents``; feature
versions list their source documents from the artifact's ``lineage.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pymongo.database import Database

from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.errors import NotFound
from twinops.features.state import ALL_AUTHORS, DocumentState, FeatureStateRepository
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.documents import DocumentRepository
from twinops.settings import Settings

_VERSION_ID = re.compile(r"^(" + "|".join(k.value for k in DatasetKind) + r")-[0-9a-f]{16}$")


class LineageStep(BaseModel):
    kind: str
    id: str
    details: dict[str, Any] = Field(default_factory=dict)


class Lineage(BaseModel):
    query: str
    steps: list[LineageStep]
    source_urls: list[str]


def _feature_version(db: Database, row: DocumentState) -> DatasetVersion | None:
    state = FeatureStateRepository(db)
    versions = DatasetVersionRepository(db)
    for scope in (row.author_id, ALL_AUTHORS):
        run = state.run_state(scope)
        if run and run.version_id and run.fingerprint == row.fingerprint:
            try:
                return versions.get(run.version_id)
            except NotFound:
                continue
    return None


def _document_steps(db: Database, row: DocumentState) -> list[LineageStep]:
    version = _feature_version(db, row)
    config = version.config if version else {}
    steps = []
    if row.cleaned:
        steps.append(
            LineageStep(
                kind="cleaned_document",
                id=row.document_id,
                details={
                    "content_hash": row.cleaned.content_hash,
                    "language": row.cleaned.language,
                    "title": row.cleaned.title,
                    "pii_placeholders": row.pii,
                    "cleaning": config.get("cleaning"),
                    "gates": config.get("gates"),
                },
            )
        )
    else:
        steps.append(
            LineageStep(
                kind="gate_rejection",
                id=row.document_id,
                details={"reason": row.reason, "detail": row.detail},
            )
        )
    stored = DocumentRepository(db).get(row.document_id)
    warehouse: dict[str, Any] = {"source_content_hash": row.source_content_hash, "platform": row.platform}
    if stored:
        warehouse.update(
            revision=stored.revision,
            current=stored.document.content_hash == row.source_content_hash,
            fetched_at=stored.document.fetched_at.isoformat(),
            crawl_run_id=stored.crawl_run_id,
        )
    else:
        warehouse["current"] = False
    steps.append(LineageStep(kind="raw_document", id=row.document_id, details=warehouse))
    steps.append(LineageStep(kind="source", id=row.source_url, details={"author": row.author_name}))
    if version:
        steps.insert(
            0,
            LineageStep(
                kind="feature_version",
                id=version.id,
                details={
                    "embedder": config.get("embedder"),
                    "chunking": config.get("chunking"),
                    "uri": version.uri,
                },
            ),
        )
    return steps


def chunk_lineage(db: Database, chunk_id: str) -> Lineage:
    state = FeatureStateRepository(db)
    row = state.find_by_chunk(chunk_id)
    if row is None:
        document = state.get(chunk_id)
        if document is None:
            raise NotFound(
                f"{chunk_id!r} is neither a chunk, a document nor a dataset version: copy an id from "
                "chunks.jsonl, a search hit or `twinops features --json`"
            )
        return Lineage(query=chunk_id, steps=_document_steps(db, document), source_urls=[document.source_url])
    chunk = next(c for c in row.chunks if c.id == chunk_id)
    head = LineageStep(
        kind="chunk",
        id=chunk_id,
        details={
            "chunk_index": chunk.chunk_index,
            "token_count": chunk.token_count,
            "document_content_hash": chunk.document_content_hash,
            "preview": " ".join(chunk.content.split())[:120],
        },
    )
    return Lineage(query=chunk_id, steps=[head, *_document_steps(db, row)], source_urls=[row.source_url])


def dataset_lineage(db: Database, version_id: str) -> Lineage:
    steps: list[LineageStep] = []
    urls: list[str] = []
    for version in DatasetVersionRepository(db).lineage(version_id):
        details: dict[str, Any] = {
            "name": version.name,
            "inputs_hash": version.inputs_hash[:16],
            "parents": list(version.parents),
            "stats": version.stats,
            "uri": version.uri,
        }
        if version.kind == DatasetKind.FEATURES:
            details["embedder"] = version.config.get("embedder")
            details["chunking"] = version.config.get("chunking")
            lineage_file = Path(version.uri or "") / "lineage.json"
            if lineage_file.exists():
                sources = json.loads(lineage_file.read_text(encoding="utf-8"))["sources"]
                urls += [
                    s["source_url"] for s in sources if s["status"] == "kept" and s["source_url"] not in urls
                ]
        steps.append(LineageStep(kind=version.kind.value, id=version.id, details=details))
    return Lineage(query=version_id, steps=steps, source_urls=urls)


def lineage(identifier: str, settings: Settings, *, db: Database | None = None) -> Lineage:
    """The chain behind a chunk id, document id or dataset version id, ending at source URLs."""
    from twinops.infra.mongo import connect

    db = db if db is not None else connect(settings)
    if _VERSION_ID.match(identifier):
        return dataset_lineage(db, identifier)
    return chunk_lineage(db, identifier)
