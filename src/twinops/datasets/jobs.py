"""The dataset job (what to build, YAML-loadable) and the summary a build returns."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from twinops.datasets.generators import GeneratorName
from twinops.infra.config_files import load_config


class DatasetJob(BaseModel):
    """Everything that shapes the training datasets; part of every DatasetVersion's identity."""

    model_config = ConfigDict(extra="forbid")

    author: str | None = Field(None, description="Only this author's chunks (full name); None = all.")
    features_version: str | None = Field(None, description="FEATURES DatasetVersion id; None = latest.")
    generator: GeneratorName = "local"
    batch_size: int = Field(8, ge=1, description="Items generated together (local) or in flight (openai).")
    threads: int | None = Field(None, ge=1, description="CPU threads for the local model; None = free cores.")
    max_chunks: int | None = Field(
        None, ge=1, description="Use only the first N chunks (demos, smoke tests)."
    )
    prompt_max_words: int = Field(
        80, ge=10, description="Passage words shown to the generator (prompt length dominates CPU time)."
    )

    # Instruction filters.
    min_instruction_words: int = Field(3, ge=1)
    max_instruction_words: int = Field(60, ge=1)
    min_answer_words: int = Field(20, ge=1)
    max_answer_chars: int = Field(2500, ge=100)
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard of instructions.")
    self_instruct: bool = Field(False, description="Add a second instruction per chunk from the seed tasks.")
    queries: str | None = Field(
        None,
        description="JSONL of questions users asked (the drift trigger's texts; relative to TWINOPS_HOME): "
        "each becomes an instruction answered by the author's closest passage (datasets.queries).",
    )
    min_query_similarity: float = Field(
        0.5, ge=-1, le=1, description="A question needs a passage at least this close (cosine) to be kept."
    )

    # Preference pairs.
    preference: bool = True
    max_pair_similarity: float = Field(0.6, gt=0, le=1, description="Drop pairs whose sides are this alike.")

    # Golden set and decontamination.
    holdout_fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Share of documents held out (by document): 77 golden questions on the demo.",
    )
    retrieval_probes: int = Field(
        4, ge=0, description="Keyword probes per chunk, besides its instruction: golden and reranker queries."
    )
    seed: int = Field(0, description="Salts the document split; change it to draw another golden set.")
    decontamination_ngram: int = Field(8, ge=3)
    decontamination_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Drop a training row when this share of its n-grams is in the golden set.",
    )

    # Reranker pairs.
    reranker: bool = True
    hard_negatives: int = Field(3, ge=1)
    reranker_candidates: int = Field(
        12, ge=2, description="Qdrant hits listed per query (serving reranks 12)."
    )

    log_to_mlflow: bool = True

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetJob:
        return load_config(cls, path, what="dataset job file")

    def identity(self) -> dict:
        """The settings that change dataset content (not batch size, logging or which run asked)."""
        return self.model_dump(
            mode="json", exclude={"batch_size", "threads", "log_to_mlflow", "features_version"}
        )


class DatasetBuildSummary(BaseModel):
    """What ``build_datasets`` did: counts, drops by reason, split sizes and the version ids."""

    features_version: str
    author: str | None
    generator: str
    chunks: int
    documents: int
    golden_documents: int
    counts: dict[str, int] = Field(default_factory=dict, description="Rows kept per dataset kind.")
    drops: dict[str, int] = Field(default_factory=dict, description="Rows dropped, by 'kind:reason'.")
    split_sizes: dict[str, dict[str, int]] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict, description="Dataset kind -> DatasetVersion id.")
    uris: dict[str, str] = Field(default_factory=dict)
    new_versions: list[str] = Field(default_factory=list, description="Ids that did not exist before.")
    mlflow_run_id: str | None = None
