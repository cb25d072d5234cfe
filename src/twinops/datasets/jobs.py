"""The dataset job (what to build, YAML-loadable) and the summary a build returns."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinops.datasets.generators import GeneratorName
from twinops.datasets.templates import VIEWS, View
from twinops.domain.progress import parse_duration
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
    budget: float | None = Field(
        300.0,
        ge=0,
        description="Seconds of generator time in all (or a duration: 90s, 10m, 1h); once spent, the "
        "remaining rows are built from the templates, so the step always ends. None: no limit; 0: "
        "templates only (the model is never loaded).",
    )
    prompt_max_words: int = Field(
        80, ge=10, description="Passage words shown to the generator (prompt length dominates CPU time)."
    )

    instruction_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the budget the generator may spend on instructions; the rest goes to "
        "the base model's answers (the rejected side of the preference pairs).",
    )

    # Instruction rows: which views of each chunk become rows (datasets.templates), and the filters.
    views: list[View] = Field(
        list(VIEWS),
        description="passage (the chunk), paragraph (each of its paragraphs), continuation (the chunk "
        "after its first sentence), document (a document's whole text, one row per document).",
    )
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
        description="Share of documents held out (by document): 6 of the demo's 20.",
    )
    paraphrased_questions: str | None = Field(
        None,
        description="JSONL of questions people wrote about the corpus in their own words, each naming its "
        "document and quoting its answer (datasets.paraphrase; relative to the current directory, as "
        "folder sources are): golden rows scored apart, and instruction rows and reranker queries.",
    )
    max_paraphrase_overlap: float = Field(
        0.34, gt=0, le=1, description="Most of a paraphrased question's content words its passage may share."
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

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("views")
    @classmethod
    def _passage_view(cls, views: list[View]) -> list[View]:
        if "passage" not in views:
            raise ValueError("views must include passage: the golden questions and the generator use it")
        return list(dict.fromkeys(views))

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetJob:
        return load_config(cls, path, what="dataset job file")

    def identity(self) -> dict:
        """The settings that change dataset content (not batch size, logging or which run asked)."""
        return self.model_dump(
            mode="json",
            exclude={
                "batch_size",
                "threads",
                "log_to_mlflow",
                "features_version",
                "budget",
                "instruction_share",
            },
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
    sources: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Rows per dataset kind by where their generated part came from: generator, "
        "template (or query); for preference pairs, their rejected side.",
    )
    rebuilt: dict[str, int] = Field(
        default_factory=dict,
        description="Rows whose generator output was unusable (or never made: budget spent) and "
        "that were rebuilt from the templates, per kind.",
    )
    drops: dict[str, int] = Field(
        default_factory=dict,
        description="Generator outputs and rows dropped, by 'kind:reason' (generator_* outputs were "
        "replaced by templates; other reasons dropped the row).",
    )
    generator_seconds: float = Field(0.0, description="Time spent generating (the budget bounds it).")

    def sources_line(self, kind: str) -> str:
        """``generator 12, template 180 (8 rebuilt from the templates)``: where ``kind``'s rows came from."""
        rebuilt = self.rebuilt.get(kind, 0)
        return ", ".join(f"{source} {count}" for source, count in self.sources.get(kind, {}).items()) + (
            f" ({rebuilt} rebuilt from the templates)" if rebuilt else ""
        )

    split_sizes: dict[str, dict[str, int]] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict, description="Dataset kind -> DatasetVersion id.")
    uris: dict[str, str] = Field(default_factory=dict)
    new_versions: list[str] = Field(default_factory=list, description="Ids that did not exist before.")
    mlflow_run_id: str | None = None
