"""The feature job: what to process and every knob of cleaning, gates, chunking and embedding.

All models are pydantic v2 and load from YAML (``FeatureJob.from_yaml``), so the CLI, KFP
components and tests build the same job. Everything that changes the output is part of the
job's fingerprint; a changed fingerprint makes the next run re-process every document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twinops.domain.hashing import content_hash
from twinops.infra.config_files import load_config


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CleaningConfig(_Config):
    strip_boilerplate: bool = Field(True, description="Drop share/subscribe/cookie lines.")
    strip_markdown_links: bool = Field(True, description="Keep link text, drop the URL.")
    strip_emphasis: bool = Field(True, description="Drop **bold**/_italic_ markers.")


class GateConfig(_Config):
    max_bytes: int = Field(1_000_000, gt=0, description="Raw size cap (UTF-8 bytes); bigger = oversize.")
    binary_residue_max_ratio: float = Field(
        0.005, ge=0, le=1, description="Share of control/replacement characters tolerated."
    )
    min_words: int = Field(20, ge=1, description="Fewer words after cleaning = too_short.")
    max_words: int = Field(60_000, gt=0, description="More words after cleaning = too_long.")
    languages: list[str] | None = Field(["en"], description="Allowed ISO 639-1 codes; null = any.")
    min_language_confidence: float = Field(0.5, ge=0, le=1)
    pii_mode: Literal["vault", "redact", "reject", "off"] = Field(
        "vault",
        description="vault: reversible placeholders (mapping in the pii_vault collection); redact: "
        "irreversible placeholders; reject: drop documents with PII; off: keep as is.",
    )
    phone_region: str = Field("US", description="Region for phone numbers written without +code.")
    exact_dedup: bool = True
    near_dedup: bool = True
    near_dup_threshold: float = Field(0.8, gt=0, le=1, description="MinHash LSH Jaccard threshold.")
    minhash_permutations: int = Field(128, ge=16, le=1024)
    shingle_words: int = Field(5, ge=1, le=20, description="Word n-gram size of MinHash shingles.")
    golden_path: Path | None = Field(
        None, description="JSONL golden set to decontaminate against (instruction/reference/text)."
    )
    golden_version: str | None = Field(
        None, description="GOLDEN DatasetVersion id (or 'latest') to decontaminate against."
    )
    decontam_ngram: int = Field(8, ge=3, le=50, description="Word n-gram size for decontamination.")
    decontam_threshold: float = Field(
        0.3, gt=0, le=1, description="Share of a golden item's n-grams a document may not contain."
    )


class ChunkerConfig(_Config):
    chunk_tokens: int = Field(200, ge=16, description="Max tokens per chunk (embedder tokenizer).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens repeated from the previous chunk.")
    min_chunk_tokens: int = Field(8, ge=1, description="Smaller trailing pieces merge backwards.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkerConfig:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        return self


class EmbeddingConfig(_Config):
    batch_size: int = Field(64, ge=1, le=4096)


class FeatureJob(_Config):
    """One run of the feature pipeline (``twinops features``)."""

    name: str = Field("twin-features", min_length=1, description="DatasetVersion name.")
    author: str | None = Field(None, description="Author full name; null = every author.")
    full: bool = Field(False, description="Re-process every document, not only changed ones.")
    cleaning: CleaningConfig = CleaningConfig()
    gates: GateConfig = GateConfig()
    chunking: ChunkerConfig = ChunkerConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    materialize_feast: bool = Field(True, description="feast apply + materialize after the run.")

    @classmethod
    def from_yaml(cls, path: Path | str) -> FeatureJob:
        return load_config(cls, path, what="feature job file")

    def processing_config(self) -> dict[str, Any]:
        """What decides a document's features (scope and run mode excluded)."""
        return {
            "cleaning": self.cleaning.model_dump(mode="json"),
            "gates": self.gates.model_dump(mode="json"),
            "chunking": self.chunking.model_dump(mode="json"),
        }

    def fingerprint(self, embedder_id: str, embedder_version: str) -> str:
        return content_hash(self.processing_config(), embedder_id, embedder_version)[:16]
