"""The feature run's DatasetVersion and its artifact folder (contract 2).

The version id hashes (source document ids + hashes) and (cleaning/gate config, chunker params,
embedder id+version): the same warehouse content and config always give the same id, so a run
with nothing new finds its version already there and writes nothing. The folder is written under
a temporary name and renamed into place, then the version is saved: a version never points at a
half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

from twinops.domain.hashing import content_hash
from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.features.report import GateReport, RejectedDocument, write_html
from twinops.features.results import GateCounts
from twinops.features.state import DocumentState
from twinops.settings import Settings


def features_dir(settings: Settings) -> Path:
    return settings.home / "features"


def current_counts(rows: list[DocumentState]) -> GateCounts:
    pii: Counter[str] = Counter()
    for row in rows:
        if row.status == "kept":
            pii.update(row.pii)
    return GateCounts(
        processed=len(rows),
        kept=sum(row.status == "kept" for row in rows),
        rejected=dict(
            sorted(Counter(row.reason for row in rows if row.status == "rejected" and row.reason).items())
        ),
        pii=dict(sorted(pii.items())),
    )


def build_version(
    *,
    name: str,
    rows: list[DocumentState],
    config: dict,
    parents: tuple[str, ...],
    settings: Settings,
) -> DatasetVersion:
    """The DatasetVersion of the features ``rows`` describe (uri filled with its folder)."""
    kept = [row for row in rows if row.status == "kept"]
    counts = current_counts(rows)
    version = DatasetVersion(
        kind=DatasetKind.FEATURES,
        name=name,
        inputs_hash=content_hash(sorted((row.document_id, row.source_content_hash) for row in rows)),
        config=config,
        parents=parents,
        stats={
            "documents": counts.kept,
            "documents_rejected": sum(counts.rejected.values()),
            "rejected_by_reason": counts.rejected,
            "pii_by_type": counts.pii,
            "chunks": sum(len(row.chunks) for row in kept),
            "authors": len({row.author_id for row in kept}),
        },
    )
    return version.model_copy(update={"uri": str(features_dir(settings) / version.id)})


def _lineage(version: DatasetVersion, rows: list[DocumentState]) -> dict:
    return {
        "version_id": version.id,
        "chain": ["source documents", "cleaning + gates", "chunker", "embedder"],
        "sources": [
            {
                "document_id": row.document_id,
                "source_url": row.source_url,
                "platform": row.platform,
                "source_content_hash": row.source_content_hash,
                "status": row.status,
                "reason": row.reason,
            }
            for row in rows
        ],
        "config": version.config,
        "parents": list(version.parents),
    }


def write_artifact(version: DatasetVersion, rows: list[DocumentState], report: GateReport) -> Path:
    """Write the version's folder unless it exists; return the folder."""
    folder = Path(version.uri or "")
    if (folder / "dataset_version.json").exists():
        return folder
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    kept = [row for row in rows if row.status == "kept"]
    with (staging / "chunks.jsonl").open("w", encoding="utf-8") as out:
        for row in kept:
            for chunk in row.chunks:
                out.write(chunk.model_dump_json() + "\n")
    with (staging / "cleaned_documents.jsonl").open("w", encoding="utf-8") as out:
        for row in kept:
            if row.cleaned:
                out.write(row.cleaned.model_dump_json() + "\n")
    report.save_json(staging / "gate_report.json")
    write_html(report, staging / "report.html")
    (staging / "lineage.json").write_text(
        json.dumps(_lineage(version, rows), indent=2, default=str), encoding="utf-8"
    )
    (staging / "dataset_version.json").write_text(version.model_dump_json(indent=2), encoding="utf-8")
    if folder.exists():  # a crashed earlier attempt without dataset_version.json
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder


def gate_report(version_id: str, scope: str, run: GateCounts, rows: list[DocumentState]) -> GateReport:
    return GateReport(
        version_id=version_id,
        scope=scope,
        run=run,
        current=current_counts(rows),
        rejected_documents=[
            RejectedDocument(
                document_id=row.document_id,
                source_url=row.source_url,
                reason=row.reason or "",
                detail=row.detail,
            )
            for row in rows
            if row.status == "rejected"
        ],
    )
