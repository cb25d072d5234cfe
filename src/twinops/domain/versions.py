"""Versioned artifacts: datasets with their lineage, and model versions linked to datasets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from twinops.domain.documents import utcnow
from twinops.domain.hashing import content_hash, drop_computed_fields


class DatasetKind(StrEnum):
    FEATURES = "features"
    INSTRUCTION = "instruction"
    PREFERENCE = "preference"
    GOLDEN = "golden"
    RERANKER = "reranker"


class DatasetVersion(BaseModel):
    """A dataset identified by the hash of its inputs and config, with its lineage parents.

    ``parents`` are the ids of the DatasetVersions (or other versioned inputs such as prompt
    templates, written ``kind:id``) this one was built from, so lineage walks back to sources.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: DatasetKind
    name: str
    inputs_hash: str = Field(description="Hash over the input items (e.g. source content hashes).")
    config: dict[str, Any] = Field(default_factory=dict)
    parents: tuple[str, ...] = ()
    stats: dict[str, Any] = Field(default_factory=dict)
    uri: str | None = Field(None, description="Where the materialized dataset lives.")
    created_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _ignore_computed(cls, data: Any) -> Any:
        return drop_computed_fields(cls, data)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        digest = content_hash(self.kind.value, self.name, self.inputs_hash, self.config, self.parents)
        return f"{self.kind.value}-{digest[:16]}"


class ModelVersion(BaseModel):
    """A trained model as the registry knows it, linked to the dataset versions it saw."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    source_uri: str
    base_model: str = Field(description="With ``adapter_dir``: the shared base the adapter applies to.")
    adapter_dir: str | None = Field(
        None, description="The LoRA adapter on ``base_model`` that makes this twin (tag ``adapter_dir``)."
    )
    dataset_version_ids: tuple[str, ...] = ()
    metrics: dict[str, float] = Field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: datetime = Field(default_factory=utcnow)
