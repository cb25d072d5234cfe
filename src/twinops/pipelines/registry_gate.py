"""The evaluate and register-and-gate steps' shared logic: who is compared with whom, and the gate.

``evaluation_models`` decides what the evaluate step scores besides the twin: the base model and,
when one exists, the ``twin-llm`` champion re-scored; for retrieval, the new reranker (as
``challenger``) and the ``twin-reranker`` champion beside cosine order. ``gate_evidence`` turns the
report into one ``GateEvidence`` per registered model: its own metrics against the champion's from
the same run, or against the baseline (base model, cosine) when there is no champion, with the
paired bootstrap interval of each difference.

``register_and_nominate`` registers the (quantized) LLM as a new ``twin-llm`` version and the
reranker as a new ``twin-reranker`` version, each with its training metrics and its own
evaluation metrics, attaches the evidence, and lets ``twinops.training.gate.nominate`` decide,
with the project's gates unless the pipeline passes its own for ``twin-llm``. A nominated twin
takes ``challenger`` and waits for its release (a canary: the deployment pipeline, or ``twinops
run``'s local release), which alone moves ``champion``. The reranker has no canary: a nominated
reranker is released here (it takes ``champion``), the one case where nomination and release are
one step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twinops.settings import Settings

TWIN = "twin"
BASE = "base"
CHAMPION_COLUMN = "champion"
CHALLENGER_RANKER = "challenger"
COSINE = "cosine"


class ChampionRef(BaseModel):
    """A champion the evaluation re-scored: its registry version and folder."""

    version: str
    path: str


class EvaluationPlan(BaseModel):
    """What the evaluate step scores besides the twin, and which champions those are."""

    llm_champion: ChampionRef | None = None
    reranker_champion: ChampionRef | None = None


class RegisteredDecision(BaseModel):
    name: str
    version: str
    alias: str | None = Field(
        description="challenger when nominated (champion for a released reranker), else none."
    )
    nominated: bool
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)


class RegistryGateSummary(BaseModel):
    llm: RegisteredDecision
    reranker: RegisteredDecision | None = None


def evaluation_plan(settings: Settings, *, twin: str | None = None) -> EvaluationPlan:
    """The current champions of ``twin`` (default twin-llm) and of the reranker (None where a model
    has none yet)."""
    from twinops.infra.registry import LLM_MODEL, RERANKER_MODEL, champion_or_none

    plan = EvaluationPlan()
    for name, field in ((twin or LLM_MODEL, "llm_champion"), (RERANKER_MODEL, "reranker_champion")):
        found = champion_or_none(name, settings, setting=f"{name}@champion")
        if found is not None and found.version is not None:
            setattr(plan, field, ChampionRef(version=found.version, path=found.model_dir))
    return plan


def _evidence(
    report: Any, group: list, challenger: str, reference: str, *, version: str | None, metrics: list[str]
):
    from twinops.domain.stats import paired_difference_interval
    from twinops.training.gate import GateEvidence

    by_name = {scores.name: scores for scores in group}
    ours, theirs = by_name.get(challenger), by_name.get(reference)
    if ours is None or theirs is None:
        return None
    intervals = {}
    for metric in metrics:
        left, right = theirs.per_question.get(metric), ours.per_question.get(metric)
        if left and right and len(left) == len(right):
            bounds = paired_difference_interval(metric, left, right)
            if all(math.isfinite(bound) for bound in bounds):
                intervals[metric] = bounds

    def measured(values: dict[str, float]) -> dict[str, float]:
        # Not measured is absent, never NaN or 0.0: the gate then refuses to promote on it.
        return {m: v for m, v in values.items() if m in metrics and math.isfinite(v)}

    return GateEvidence(
        evaluation=report.mlflow_run_id or report.report_dir,
        golden=report.golden,
        questions=report.questions,
        challenger=measured(ours.metrics),
        reference=measured(theirs.metrics),
        reference_name=CHAMPION_COLUMN if version is not None else reference,
        reference_version=version,
        improvement_ci=intervals,
    )


def gate_evidence(report: Any, plan: EvaluationPlan, *, twin: str | None = None) -> dict[str, Any]:
    """``{registered name: GateEvidence}`` for ``twin`` (default twin-llm) and twin-reranker, where
    the report allows."""
    from twinops.infra.registry import LLM_MODEL, RERANKER_MODEL

    evidence: dict[str, Any] = {}
    llm_metrics = sorted({m for s in report.models for m in s.metrics})
    champion = plan.llm_champion
    llm = _evidence(
        report,
        report.models,
        TWIN,
        CHAMPION_COLUMN if champion else BASE,
        version=champion.version if champion else None,
        metrics=llm_metrics,
    )
    if llm is not None:
        evidence[twin or LLM_MODEL] = llm
    ranker_metrics = sorted({m for s in report.retrieval for m in s.metrics})
    champion = plan.reranker_champion
    ranker = _evidence(
        report,
        report.retrieval,
        CHALLENGER_RANKER,
        CHAMPION_COLUMN if champion else COSINE,
        version=champion.version if champion else None,
        metrics=ranker_metrics,
    )
    if ranker is not None:
        evidence[RERANKER_MODEL] = ranker
    return evidence


def _numbers(values: dict[str, Any] | None) -> dict[str, float]:
    from twinops.pipelines.artifacts import flatten_numbers

    return flatten_numbers(values or {})


def _register_and_nominate(
    name: str,
    pointer: dict,
    folder: Path,
    *,
    metrics: dict[str, float],
    evidence: dict | None,
    settings: Settings,
    gate: Any,
    release: bool = False,
    adapter: Any = None,
) -> RegisteredDecision:
    from twinops.training.gate import GateEvidence, nominate, record_evidence, release_without_canary
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
        adapter=adapter,
        # A GPTQ twin's adapter makes the float model it was quantized from.
        adapter_merges_to=pointer.get("source_model"),
    )
    proof = GateEvidence.model_validate(evidence) if evidence else None
    if proof is not None:
        record_evidence(name, version.version, proof, settings)
    decision = nominate(name, settings, gate, version=version.version, evidence=proof)
    alias = "challenger" if decision.nominated else None
    reason = decision.reason
    if decision.nominated and release:
        why = f"{name} has no canary: its gate releases it"
        release_without_canary(name, version.version, settings, reason=why)
        alias, reason = "champion", f"{reason}; released (no canary for {name})"
    return RegisteredDecision(
        name=name,
        version=str(version.version),
        alias=alias,
        nominated=decision.nominated,
        reason=reason,
        metrics=metrics,
    )


def register_and_nominate(
    llm: dict,
    llm_folder: Path,
    evaluation: dict,
    settings: Settings,
    *,
    reranker: dict | None = None,
    reranker_folder: Path | None = None,
    gate: dict | None = None,
    twin: str | None = None,
) -> RegistryGateSummary:
    """Register both models (training + their own evaluation metrics) and gate each on its evidence;
    the nominated reranker is released at once (it has no canary). The LLM registers as ``twin``
    (default twin-llm), with its adapter on the shared base the pointer names."""
    from twinops.training.gate import parse_gate
    from twinops.training.registry import LLM_MODEL, RERANKER_MODEL, shared_adapter_of

    twin = twin or LLM_MODEL
    llm_gate = parse_gate(gate, twin, "the pipeline's `gate` parameter") if gate else None
    evidence = evaluation.get("evidence") or {}
    own = evaluation.get("metrics") or {}
    summary = RegistryGateSummary(
        llm=_register_and_nominate(
            twin,
            llm,
            llm_folder,
            metrics={**_numbers(llm.get("metrics")), **_numbers(own.get(twin))},
            evidence=evidence.get(twin),
            settings=settings,
            gate=llm_gate,
            adapter=shared_adapter_of(llm),
        )
    )
    if reranker is not None and reranker_folder is not None:
        summary.reranker = _register_and_nominate(
            RERANKER_MODEL,
            reranker,
            reranker_folder,
            metrics={**_numbers(reranker.get("metrics")), **_numbers(own.get(RERANKER_MODEL))},
            evidence=evidence.get(RERANKER_MODEL),
            settings=settings,
            gate=None,
            release=True,
        )
    return summary
