"""What an evaluation is asked to do and what it reports (pydantic, no heavy imports)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ModelSpec(BaseModel):
    """One model in the comparison: a display name and a folder (merged HF model or GPTQ folder)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Column name in the report, e.g. base, sft, dpo, gptq.")
    path: str = Field(description="Model folder, bundled:NAME, or HF id.")

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME=PATH`` as the CLI takes it."""
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            from twinops.errors import ConfigError

            raise ConfigError(f"--model {text!r} is not NAME=PATH: write e.g. --model sft=runs/sft/r1/merged")
        return cls(name=name.strip(), path=path.strip())


class EvaluationJob(BaseModel):
    """Models side by side on the golden set; every part can be switched off."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)
    baseline: str | None = Field(
        None,
        description="The model every other is compared with, pairwise on the same texts and questions "
        "(the paired bootstrap interval of each difference); None: the first model.",
    )
    golden: str = Field("latest", description="Golden DatasetVersion id, 'latest', or a dataset folder.")
    preference: str | None = Field(
        "latest",
        description="Preference DatasetVersion id/'latest'/folder for the style classifier; None = skip.",
    )
    max_questions: int = Field(
        16,
        ge=1,
        description="Golden questions the models answer (generation dominates the time); perplexity and "
        "retrieval use every golden row.",
    )
    max_new_tokens: int = Field(64, ge=1, description="Tokens generated per answer (greedy).")
    max_length: int = Field(256, ge=16, description="Tokens per text for perplexity.")
    judge: bool = Field(True, description="Ask the LLM judge when TWINOPS_JUDGE_URL is configured.")
    retrieval: bool = Field(True, description="Measure hit@k/MRR of the golden questions in Qdrant.")
    retrieval_k: int = Field(5, ge=1)
    rerank_candidates: int = Field(12, ge=1, description="Qdrant hits each reranker reorders (serving: 12).")
    reranker_path: str | None = Field(None, description="A reranker folder, scored as 'reranker'.")
    rerankers: list[ModelSpec] = Field(
        default_factory=list, description="Named reranker folders (e.g. challenger, champion)."
    )
    author_id: str | None = Field(None, description="Restrict retrieval to one author.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where models run: auto = CUDA when present, else CPU."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights of float models on CUDA (bfloat16 on a GPU node pool)."
    )
    batch_size: int = Field(4, ge=1, description="Questions answered per generate call.")
    gptq_tolerance: float = Field(
        0.03,
        gt=0,
        description="Relative perplexity gap allowed between GPTQ kernels and the float copy; beyond "
        "it the evaluation fails (the kernels do not compute the folder's weights).",
    )
    output_dir: Path | None = Field(None, description="Default TWINOPS_HOME/reports/evaluation/<timestamp>.")
    track: bool = Field(True, description="Log one MLflow run per model (nested in a comparison run).")

    def named_rerankers(self) -> list[ModelSpec]:
        """``rerankers`` plus ``reranker_path`` as ``reranker``."""
        extra = [ModelSpec(name="reranker", path=self.reranker_path)] if self.reranker_path else []
        return [*self.rerankers, *extra]

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        names = [model.name for model in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        return models

    @model_validator(mode="after")
    def _known_baseline(self) -> EvaluationJob:
        names = [model.name for model in self.models]
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models {names}")
        return self

    def baseline_name(self) -> str:
        return self.baseline or self.models[0].name


class ModelScores(BaseModel):
    """One model's (or ranker's) metrics, each with its bootstrap interval and per-question values."""

    name: str
    path: str
    metrics: dict[str, float] = Field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Per metric, its 95% percentile-bootstrap interval."
    )
    per_question: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Per metric, the per-question (perplexity: per-text log) values, in golden order.",
    )
    compared_with: str | None = Field(
        None, description="The baseline of ``difference`` and ``difference_ci`` (None: this is it)."
    )
    difference: dict[str, float] = Field(
        default_factory=dict, description="Per metric, this model's value minus the baseline's."
    )
    difference_ci: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Per metric, the paired 95% bootstrap interval of that difference: both scored on "
        "the same held-out texts (perplexity) or questions, resampled together.",
    )
    backend: str | None = Field(None, description="How it ran: float or gptq-kernels.")
    notes: list[str] = Field(default_factory=list, description="Checks that passed, one line each.")
    seconds: float | None = Field(None, description="Wall time to load and score it.")
    mlflow_run_id: str | None = None


class EvaluationReport(BaseModel):
    report_dir: str
    golden: str
    questions: int = Field(description="Golden rows used for perplexity and retrieval.")
    answered: int = Field(0, description="Golden questions each model answered (generation metrics).")
    models: list[ModelScores]
    retrieval: list[ModelScores] = Field(
        default_factory=list, description="hit@k / MRR per ranker: cosine, then each reranker."
    )
    judge: str = Field(description="'used <model>' or why it was skipped.")
    style_classifier: dict[str, float] = Field(default_factory=dict, description="Its held-out accuracy.")
    files: dict[str, str] = Field(default_factory=dict, description="table.md, table.html, plots.")
    mlflow_run_id: str | None = Field(None, description="The comparison (parent) run.")
    device: str = Field("cpu", description="Where the models ran.")
    skipped: list[str] = Field(default_factory=list, description="Parts not measured, and why.")
