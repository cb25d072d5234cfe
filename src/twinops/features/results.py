"""What the feature stages hand each other and return (pydantic, JSON round-trippable for KFP)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinops.domain.documents import CleanedDocument, DocumentOrigin


class GateOutcome(DocumentOrigin):
    """What the gate found about one warehouse document: in the decision a run hands on, and in the
    feature state that remembers it (``features.state.DocumentState``)."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    source_content_hash: str
    reason: str | None = None
    detail: str = ""
    cleaned: CleanedDocument | None = None
    exact_hash: str | None = None
    minhash: bytes | None = None
    pii: dict[str, int] = Field(default_factory=dict)

    @field_validator("cleaned", mode="before")
    @classmethod
    def _drop_computed(cls, value):
        # JSON from a previous step carries the computed content_hash; it is derived, not input.
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "content_hash"}
        return value


class DocumentDecision(GateOutcome):
    """The clean-and-gate outcome for one warehouse document."""

    kept: bool


class GateCounts(BaseModel):
    processed: int = 0
    kept: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    pii: dict[str, int] = Field(default_factory=dict)
    unchanged: int = 0
    deleted: int = 0

    @classmethod
    def of(cls, decisions: list[DocumentDecision], *, unchanged: int = 0, deleted: int = 0) -> GateCounts:
        pii: Counter[str] = Counter()
        for decision in decisions:
            pii.update(decision.pii)
        return cls(
            processed=len(decisions),
            kept=sum(d.kept for d in decisions),
            rejected=dict(sorted(Counter(d.reason for d in decisions if not d.kept and d.reason).items())),
            pii=dict(sorted(pii.items())),
            unchanged=unchanged,
            deleted=deleted,
        )


class GateResult(BaseModel):
    """Output of ``clean_and_gate``, input of ``chunk_embed_load`` (a file between KFP steps)."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    scope: str
    author_id: str | None = None
    author_name: str | None = None
    full: bool
    full_reason: str = ""
    fingerprint: str
    embedder_id: str
    embedder_version: str
    watermark: datetime | None = None
    golden_version_id: str | None = None
    decisions: list[DocumentDecision] = Field(default_factory=list)
    deleted_ids: list[str] = Field(default_factory=list)
    unchanged: int = 0

    @property
    def counts(self) -> GateCounts:
        return GateCounts.of(self.decisions, unchanged=self.unchanged, deleted=len(self.deleted_ids))

    @property
    def has_changes(self) -> bool:
        return bool(self.decisions or self.deleted_ids)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> GateResult:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


class FeatureRunSummary(BaseModel):
    """What one feature run did (``twinops features --json`` prints this)."""

    version_id: str
    artifact_dir: str
    new_version: bool
    scope: str
    full: bool
    full_reason: str = ""
    gate: GateCounts
    chunks_upserted: int = 0
    chunks_deleted: int = 0
    documents_total: int = Field(0, description="Documents kept in the features (scope).")
    chunks_total: int = Field(0, description="Chunks in the features (scope).")
    chunks_collection: str
    documents_collection: str
    alias_switched: bool = False
    embedding_model_id: str
    embedding_model_version: str
    report_html: str
    feast_materialized: bool = False
    seconds: float = 0.0

    @property
    def wrote_anything(self) -> bool:
        return bool(
            self.new_version
            or self.chunks_upserted
            or self.chunks_deleted
            or self.gate.processed
            or self.gate.deleted
        )


class MaterializeSummary(BaseModel):
    repo_path: str
    online_store: str
    documents: int
    authors: int
