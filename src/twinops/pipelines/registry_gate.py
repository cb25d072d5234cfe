"""Register the twin and its reranker in MLflow and run the promotion gate (register-and-gate).

The component body is a shell around ``register_and_promote``: it registers the (quantized) LLM as
a new ``twin-llm`` version and the CrossEncoder as a new ``twin-reranker`` version, each under the
``challenger`` alias with its training and evaluation metrics, then lets
``twinops.training.gate.promote`` decide whether each becomes ``champion``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twinops.settings import Settings


class RegisteredDecision(BaseModel):
    name: str
    version: str
    alias: str = Field(description="champion when promoted, else challenger.")
    promoted: bool
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)


class RegistryGateSummary(BaseModel):
    llm: RegisteredDecision
    reranker: RegisteredDecision | None = None


def _numbers(values: dict[str, Any] | None) -> dict[str, float]:
    from twinops.pipelines.artifacts import flatten_numbers

    return flatten_numbers(values or {})


def _register_and_promote(
    name: str, pointer: dict, folder: Path, *, metrics: dict[str, float], settings: Settings, gate: Any
) -> RegisteredDecision:
    from twinops.training.gate import promote
    from twinops.training.registry import register_model

    version = register_model(
        name,
        folder,
        settings,
        base_model=str(pointer.get("base_model") or ""),
        dataset_version_ids=list(pointer.get("dataset_version_ids") or []),
        run_id=pointer.get("mlflow_run_id"),
        metrics=metrics,
        stage=pointer.get("stage"),
    )
    decision = promote(name, settings, gate)
    return RegisteredDecision(
        name=name,
        version=str(version.version),
        alias="champion" if decision.promoted else "challenger",
        promoted=decision.promoted,
        reason=decision.reason,
        metrics=metrics,
    )


def register_and_promote(
    llm: dict,
    llm_folder: Path,
    evaluation: dict,
    settings: Settings,
    *,
    reranker: dict | None = None,
    reranker_folder: Path | None = None,
    gate: dict | None = None,
) -> RegistryGateSummary:
    """Register both models (training + evaluation metrics) and gate each one."""
    from twinops.training.gate import GateConfig
    from twinops.training.registry import LLM_MODEL, RERANKER_MODEL

    llm_gate = GateConfig.model_validate(gate) if gate else None
    # Evaluation metrics win over training ones of the same name: they are what the gate compares.
    llm_metrics = {**_numbers(llm.get("metrics")), **_numbers(evaluation.get("metrics", evaluation))}
    summary = RegistryGateSummary(
        llm=_register_and_promote(
            LLM_MODEL, llm, llm_folder, metrics=llm_metrics, settings=settings, gate=llm_gate
        )
    )
    if reranker is not None and reranker_folder is not None:
        summary.reranker = _register_and_promote(
            RERANKER_MODEL,
            reranker,
            reranker_folder,
            metrics=_numbers(reranker.get("metrics")),
            settings=settings,
            gate=None,
        )
    return summary
