"""Training jobs as pydantic models, buildable from YAML (``configs/training/*.yaml``).

The defaults are sized so the whole SFT → DPO → reranker chain runs on 2 CPU cores in a few
minutes with the bundled 135M model; the GPU configs in ``configs/training`` scale them up.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from twinops.errors import ConfigError
from twinops.infra.config_files import read_yaml_mapping, validate_config

JobT = TypeVar("JobT", bound=BaseModel)


class LoraSpec(BaseModel):
    """The LoRA adapter: rank, scaling, dropout and which linear layers get one."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: int = Field(16, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Names of the linear layers to adapt (Llama-style by default), or ['all-linear'].",
    )


class TrainerSpec(BaseModel):
    """Optimisation and batching; mapped onto transformers ``TrainingArguments``."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(2e-4, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(5, description="Optimizer steps; -1 = run num_train_epochs.")
    step_cap: int = Field(
        -1,
        description="With max_steps=-1: stop the epochs after this many optimizer steps, so a run sized "
        "by its data (epochs) still has a ceiling on a large corpus; -1 = no ceiling.",
    )
    per_device_train_batch_size: int = Field(2, ge=1)
    per_device_eval_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(256, ge=16, description="Tokens per example (prompt + completion).")
    warmup_steps: float = Field(0, ge=0, description="Warmup steps (an int), or a ratio of all steps if < 1.")
    weight_decay: float = Field(0.0, ge=0.0)
    lr_scheduler_type: str = "linear"
    logging_steps: int = Field(1, ge=1)
    seed: int = 0
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPU).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (7B-class).")
    device: Literal["auto", "cpu"] = Field("auto", description="`cpu` forces CPU even with a GPU.")
    max_train_samples: int | None = Field(None, ge=1, description="Cap the train split (smoke runs).")
    max_eval_samples: int | None = Field(32, ge=1, description="Cap the test split used for eval.")
    dataloader_num_workers: int = Field(0, ge=0)


class _JobBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: ClassVar[str] = ""

    dataset: str = Field("latest", description="DatasetVersion id, or `latest` of the stage's kind.")
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    run_name: str | None = Field(None, description="Folder name under runs/<stage>/; default generated.")
    output_dir: Path | None = Field(None, description="Write here instead of TWINOPS_HOME/runs/<stage>/.")
    progress: bool = Field(True, description="Show a rich progress bar with the loss.")

    @classmethod
    def from_yaml(cls: type[JobT], path: str | Path) -> JobT:
        return load_job(cls, path)


class DAPTJob(_JobBase):
    """Domain-adaptive continued pretraining with LoRA: the author's own passages as plain text.

    The passages are the instruction dataset's train split answers (the author's chunks from the
    training documents, decontaminated against the golden set), so the held-out documents the
    evaluation measures perplexity on are never trained on. SFT then starts from the merged model.
    """

    stage: ClassVar[str] = "dapt"

    dataset: str = Field(
        "latest", description="Instruction DatasetVersion id whose passages are read, or `latest`."
    )
    model: str | None = Field(
        None, description="Base model: bundled:NAME, folder or HF id; default TWINOPS_BASE_MODEL."
    )
    lora: LoraSpec = Field(
        default_factory=lambda: LoraSpec(r=16, alpha=32, target_modules=["all-linear"]),
        description="Every linear layer by default: new vocabulary and phrasing live in the MLPs too.",
    )
    trainer: TrainerSpec = Field(
        default_factory=lambda: TrainerSpec(learning_rate=3e-4, max_steps=-1, num_train_epochs=2, step_cap=40)
    )


class SFTJob(_JobBase):
    """Supervised fine-tuning with LoRA on an instruction dataset (contract 4)."""

    stage: ClassVar[str] = "sft"

    model: str | None = Field(
        None, description="Base model: bundled:NAME, folder or HF id; default TWINOPS_BASE_MODEL."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec)


class DPOJob(_JobBase):
    """Preference tuning with LoRA, starting from the SFT model."""

    stage: ClassVar[str] = "dpo"

    model: str | None = Field(
        None,
        description="Start model: folder, HF id or bundled:NAME; default the latest SFT run's merged model.",
    )
    lora: LoraSpec = Field(default_factory=LoraSpec)
    beta: float = Field(
        0.1, gt=0, description="DPO temperature: how far the policy may move from the reference."
    )
    trainer: TrainerSpec = Field(default_factory=lambda: TrainerSpec(learning_rate=5e-5))


class RerankerJob(_JobBase):
    """The reranker (``twinops.training.reranker``): a cross-encoder from the bundled MiniLM, learned as a
    correction on top of cosine retrieval over each query's top-k Qdrant candidates."""

    stage: ClassVar[str] = "reranker"

    model: str | None = Field(None, description="Initial encoder; default TWINOPS_EMBEDDING_MODEL (MiniLM).")
    candidates: int = Field(12, ge=2, description="Candidates ranked per query (serving's RAG reranks 12).")
    validation_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of training documents whose queries validate."
    )
    first_stage_weight: float = Field(20.0, ge=0.0, description="Initial weight of the cosine in the score.")
    lexical_weight: float = Field(
        0.0, ge=0.0, description="Initial weight of the list-IDF query-word overlap in the score."
    )
    first_stage_weight_lr: float = Field(
        0.05, ge=0.0, description="Learning rate of both weights while the cross-encoder trains."
    )
    fusion_steps: int = Field(
        300,
        ge=0,
        description="Full-batch steps fitting the two weights on every training list before the "
        "cross-encoder trains (features only: no encoder pass, seconds on CPU).",
    )
    head_learning_rate: float = Field(
        2e-3,
        gt=0.0,
        description="Learning rate of the zero-initialised relevance head (the body: trainer's).",
    )
    trainer: TrainerSpec = Field(
        default_factory=lambda: TrainerSpec(
            learning_rate=3e-5, max_steps=10, per_device_train_batch_size=2, max_length=192, logging_steps=5
        ),
        description="per_device_train_batch_size counts queries (each with its candidate list).",
    )


def load_job(cls: type[JobT], path: str | Path) -> JobT:
    """Read ``path`` as a ``cls`` job; any problem becomes one ``ConfigError`` line."""
    label = getattr(cls, "stage", "") or cls.__name__
    raw = read_yaml_mapping(path, what=f"{label} config", shape="a mapping of job fields")
    # ``stage:`` in the shipped configs guards against training DPO with an SFT file.
    stage = raw.pop("stage", label)
    if stage != label:
        raise ConfigError(f"{path} is a `{stage}` config, not `{label}`: pass a {label} config")
    return validate_config(cls, raw, what=f"{label} config", path=path)
