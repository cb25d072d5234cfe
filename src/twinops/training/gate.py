"""The gate: a registered version is nominated (it takes ``challenger``) only when it beats the right
reference on its own metrics, measured in one evaluation, and the decision is recorded either way.

The gate nominates; it never moves ``champion``. The release (the rollout's promote, after a canary
passed: ``twinops.rollout``) is the one writer of ``champion``, and a version whose canary was
rolled back is tagged ``rejected`` and never nominated again. ``promote_by_hand`` (``twinops
registry promote``) is the explicit manual override, recorded as such. The reranker, which has no
canary, is released by the registering step itself once nominated (see
``twinops.pipelines.registry_gate``).

What is compared with what:

- the challenger's metrics come from the evaluation step (``GateEvidence``), never from training:
  retrieval hit@k/MRR for ``twin-reranker``, golden perplexity and style (and judge scores when a
  judge ran) for ``twin-llm``;
- the reference was scored **in the same evaluation, on the same questions**: the current champion
  re-scored, or, when there is no champion yet, the baseline (cosine-only retrieval for the
  reranker, the base model for the LLM). A first version is gated like any other;
- evidence whose reference is not the current champion (the champion moved since the evaluation)
  nominates nothing: evaluate again;
- a metric a rule names that is missing on either side fails that rule: no default values.

A rule with ``beyond_noise`` also needs the paired bootstrap confidence interval of the improvement
(``GateEvidence.improvement_ci``) to lie entirely on the better side of zero.

The gate settings have one source, ``gates.yaml`` beside this module (``configs/training/gate.yaml``
links to it): the pipelines, ``twinops run`` and ``twinops registry gate`` all read it, and
``--gate FILE`` / the pipeline's ``gate`` parameter replace it. The decision is written three
times: tags ``gate.*`` and the description on the challenger version, a tag ``last_gate`` on the
registered model, and an MLflow run in ``twinops-registry`` with ``gate/decision.json``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twinops.domain.twins import LLM_TWIN_PREFIX, is_twin_model_name
from twinops.errors import ConfigError, NotFound
from twinops.infra.config_files import read_yaml_mapping, validate_config
from twinops.infra.registry import REJECTED_TAG, ReleasePath, fails_fast, record_release
from twinops.infra.tracking import ensure_experiment
from twinops.settings import Settings
from twinops.training.registry import (
    CHALLENGER,
    CHAMPION,
    client,
    require_registered,
    version_by_alias,
)

GATES_FILE = Path(__file__).with_name("gates.yaml")
MANUAL_TAG = "champion.manual"  # on a version a person promoted, with their reason
EVIDENCE_TAG = "gate.evidence"


class MetricRule(BaseModel):
    """One metric the challenger must improve: by more than 0, ≥ ``min_delta`` and ≥ ``min_relative``."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    direction: Literal["lower", "higher"] = Field(description="Which way is better (perplexity: lower).")
    min_delta: float = Field(0.0, ge=0.0, description="Absolute improvement required.")
    min_relative: float = Field(0.0, ge=0.0, description="Improvement relative to the reference (0.02 = 2%).")
    beyond_noise: bool = Field(
        False, description="The 95% bootstrap interval of the improvement must exclude zero."
    )
    no_loss: bool = Field(
        False,
        description="Guard, not goal: the challenger need not improve, only not be worse beyond noise "
        "(the 95% paired interval of the improvement reaches 0). Needs the interval.",
    )

    @model_validator(mode="after")
    def _one_meaning(self) -> MetricRule:
        if self.no_loss and (self.beyond_noise or self.min_delta or self.min_relative):
            raise ValueError(
                "no_loss asks only that the challenger is not worse; it takes no beyond_noise, "
                "min_delta or min_relative (make two rules for two demands)"
            )
        return self


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[MetricRule] = Field(min_length=1)
    require: Literal["all", "any"] = Field("all", description="Promote when all (or any) rules pass.")


class GateEvidence(BaseModel):
    """The challenger and its reference, scored by one evaluation on the same questions."""

    model_config = ConfigDict(extra="forbid")

    evaluation: str = Field(description="The evaluation that measured both: its MLflow run id or folder.")
    golden: str = Field(description="The golden DatasetVersion the questions came from.")
    questions: int = Field(ge=0, description="Questions both sides were scored on.")
    challenger: dict[str, float]
    reference: dict[str, float]
    reference_name: str = Field(description="'champion', or the baseline: 'cosine', 'base'.")
    reference_version: str | None = Field(
        None, description="The registry version re-scored as the reference; None for a baseline."
    )
    improvement_ci: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Per metric, the 95% paired-bootstrap interval of challenger minus reference.",
    )


class MetricCheck(BaseModel):
    metric: str
    direction: str
    reference: float | None
    challenger: float | None
    improvement: float | None
    relative_improvement: float | None
    improvement_ci: tuple[float, float] | None = None
    passed: bool
    why: str = Field(description="One line: the numbers and the verdict.")


class GateDecision(BaseModel):
    """Whether a version was nominated (took ``challenger``), compared with what, and why."""

    name: str
    nominated: bool
    reason: str
    version: str = Field(description="The version the gate judged.")
    champion_version: str | None = Field(description="The champion (the gate never moves it).")
    challenger_version: str | None = Field(description="The challenger after the decision.")
    reference: str | None = Field(None, description="What the challenger was compared with.")
    checks: list[MetricCheck] = Field(default_factory=list)
    decision_run_id: str | None = None


def parse_gate(raw: Any, name: str, where: str) -> GateConfig:
    """A ``GateConfig`` from a mapping, with one ``ConfigError`` line naming ``where`` when invalid."""
    return validate_config(GateConfig, raw, what=f"gate {name!r} in {where}")


def load_gate(path: str | Path | None, name: str) -> GateConfig:
    """The gate for ``name`` from a YAML mapping ``{model name: {rules: [...], require: all}}``.

    ``path`` None: the project's gates (``GATES_FILE``). An author's twin (``twin-llm-<author>``)
    without an entry of its own takes ``twin-llm``'s rules: every twin is held to the same bar
    unless the file says otherwise.
    """
    path = Path(path) if path is not None else GATES_FILE
    raw = read_yaml_mapping(path, what="gate config", shape="a mapping of model names to gates")
    if name not in raw and is_twin_model_name(name) and LLM_TWIN_PREFIX in raw:
        return parse_gate(raw[LLM_TWIN_PREFIX], name, f"{path} (its {LLM_TWIN_PREFIX} entry)")
    if name not in raw:
        raise ConfigError(f"gate config {path} has no entry for {name!r}: add `{name}: {{rules: [...]}}`")
    return parse_gate(raw[name], name, str(path))


def check_rule(
    rule: MetricRule, evidence: GateEvidence, *, reference_label: str = "reference"
) -> MetricCheck:
    """Whether the challenger beats the reference on ``rule`` (a missing side fails, never defaults)."""
    challenger = _present(evidence.challenger.get(rule.metric))
    reference = _present(evidence.reference.get(rule.metric))
    missing = [
        side for side, value in (("challenger", challenger), (reference_label, reference)) if value is None
    ]
    if missing:
        return MetricCheck(
            metric=rule.metric,
            direction=rule.direction,
            reference=reference,
            challenger=challenger,
            improvement=None,
            relative_improvement=None,
            passed=False,
            why=f"{rule.metric} is missing on the {' and the '.join(missing)}: no promotion without it "
            "(evaluate both in one run)",
        )
    sign = -1.0 if rule.direction == "lower" else 1.0
    improvement = sign * (challenger - reference)
    # A zero reference makes any gain infinitely large in relative terms.
    relative = improvement / abs(reference) if reference != 0 else (math.inf if improvement > 0 else 0.0)
    passed = improvement > 0 and improvement >= rule.min_delta and relative >= rule.min_relative
    interval = evidence.improvement_ci.get(rule.metric)
    better = None
    if interval is not None:
        # The interval is of challenger minus reference; turn it into "improvement" terms.
        better = tuple(sorted((sign * interval[0], sign * interval[1])))
    if rule.no_loss:
        passed, why = _no_loss_verdict(rule, challenger, reference, improvement, better)
    else:
        noise = ""
        if rule.beyond_noise:
            if better is None:
                passed, noise = False, "; no confidence interval to tell it from noise"
            elif better[0] <= 0:
                passed, noise = False, f"; within noise (95% CI of Δ [{better[0]:.3g}, {better[1]:.3g}])"
            else:
                noise = f"; beyond noise (95% CI of Δ [{better[0]:.3g}, {better[1]:.3g}])"
        verdict = "beats" if passed else "does not beat"
        why = (
            f"{rule.metric} {challenger:.4g} vs {reference:.4g} ({rule.direction} is better): {verdict} "
            f"the margin (Δ={improvement:.4g}, needs > 0, ≥ {rule.min_delta:g} and ≥ "
            f"{rule.min_relative:.2%} relative){noise}"
        )
    return MetricCheck(
        metric=rule.metric,
        direction=rule.direction,
        reference=reference,
        challenger=challenger,
        improvement=improvement,
        relative_improvement=relative,
        improvement_ci=better,
        passed=passed,
        why=why,
    )


def _no_loss_verdict(
    rule: MetricRule,
    challenger: float,
    reference: float,
    improvement: float,
    better: tuple[float, float] | None,
) -> tuple[bool, str]:
    """A guard: passes unless the challenger is worse beyond noise (a missing interval fails)."""
    if better is None:
        passed, verdict = False, "no confidence interval to tell a loss from noise"
    elif better[1] < 0:
        passed, verdict = False, f"worse beyond noise (95% CI of Δ [{better[0]:.3g}, {better[1]:.3g}])"
    else:
        passed, verdict = True, f"no loss beyond noise (95% CI of Δ [{better[0]:.3g}, {better[1]:.3g}])"
    why = (
        f"{rule.metric} {challenger:.4g} vs {reference:.4g} ({rule.direction} is better, must not "
        f"get worse): Δ={improvement:.4g}, {verdict}"
    )
    return passed, why


def _present(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def judge(gate: GateConfig, evidence: GateEvidence) -> tuple[bool, list[MetricCheck]]:
    """(passes, one check per rule): the decision without the registry. A missing metric always blocks."""
    label = _reference_label(evidence)
    checks = [check_rule(rule, evidence, reference_label=label) for rule in gate.rules]
    if any(check.challenger is None or check.reference is None for check in checks):
        return False, checks  # a missing metric blocks, whatever `require` says
    passed = [check.passed for check in checks]
    return (all(passed) if gate.require == "all" else any(passed)), checks


def _reference_label(evidence: GateEvidence) -> str:
    if evidence.reference_version is not None:
        return f"{evidence.reference_name} v{evidence.reference_version}"
    return f"baseline {evidence.reference_name!r}"


def read_evidence(mlflow_version: Any) -> GateEvidence | None:
    """The evidence the evaluation attached to a version (``record_evidence``), if any."""
    raw = (mlflow_version.tags or {}).get(EVIDENCE_TAG)
    if not raw:
        return None
    try:
        return GateEvidence.model_validate_json(raw)
    except ValidationError:
        return None


@fails_fast("recording the evaluation's evidence")
def record_evidence(name: str, version: str, evidence: GateEvidence, settings: Settings) -> None:
    """Attach an evaluation's evidence to ``name`` ``version``, where ``nominate`` reads it."""
    mlflow_client = client(settings)
    require_registered(mlflow_client, name)
    mlflow_client.set_model_version_tag(name, str(version), EVIDENCE_TAG, evidence.model_dump_json())


def _stale(evidence: GateEvidence, champion: Any) -> str | None:
    """Why the evidence does not compare with the current champion (None when it does)."""
    if champion is None and evidence.reference_version is not None:
        return f"the evidence compares with v{evidence.reference_version}, but there is no {CHAMPION!r} now"
    if champion is not None and evidence.reference_version != str(champion.version):
        compared = (
            f"v{evidence.reference_version}"
            if evidence.reference_version
            else f"the baseline {evidence.reference_name!r}"
        )
        return f"the evidence compares with {compared}, but {CHAMPION!r} is v{champion.version}"
    return None


def _newest_version(mlflow_client: Any, name: str) -> str:
    found = mlflow_client.search_model_versions(f"name = '{name}'")
    if not found:
        raise ConfigError(f"registered model {name!r} has no versions: register one first")
    return str(max(int(version.version) for version in found))


@fails_fast("the gate nominated a challenger")
def nominate(
    name: str,
    settings: Settings,
    gate: GateConfig | None = None,
    *,
    version: str | None = None,
    evidence: GateEvidence | None = None,
) -> GateDecision:
    """Point ``challenger`` of ``name`` at ``version`` (default: the newest) when the gate passes;
    record why either way. ``champion`` is never moved here: the release moves it.

    ``evidence`` defaults to what the evaluation attached to the version (``record_evidence``);
    ``gate`` to the project's gate for ``name``. No evidence, stale evidence, a missing metric or a
    ``rejected`` tag (its canary was rolled back) means no nomination (recorded, not raised). A
    missing registered model or version raises one line before anything is written.
    """
    gate = gate or load_gate(None, name)
    mlflow_client = client(settings)
    require_registered(mlflow_client, name)
    version = str(version) if version is not None else _newest_version(mlflow_client, name)
    candidate = _model_version(mlflow_client, name, version)
    champion = version_by_alias(mlflow_client, name, CHAMPION, required=False)
    challenger = version_by_alias(mlflow_client, name, CHALLENGER, required=False)
    evidence = evidence or read_evidence(candidate)
    checks: list[MetricCheck] = []
    reference = None
    rejected = (candidate.tags or {}).get(REJECTED_TAG)
    if rejected:
        nominated = False
        reason = f"v{version} is tagged {REJECTED_TAG!r} ({rejected[:300]}): never nominated again"
    elif champion is not None and str(champion.version) == version:
        nominated, reason = False, f"v{version} is already {CHAMPION!r}: nothing to compare"
    elif evidence is None:
        nominated, reason = (
            False,
            f"v{version} not nominated: it has no evaluation evidence; evaluate it beside the champion "
            "(or the baseline) in one run, e.g. the pipeline's evaluate step",
        )
    elif (stale := _stale(evidence, champion)) is not None:
        reference = _reference_label(evidence)
        nominated, reason = False, f"v{version} not nominated: {stale}; evaluate again"
    else:
        reference = _reference_label(evidence)
        nominated, checks = judge(gate, evidence)
        head = (
            f"nominated v{version} ({CHALLENGER!r}): it beats {reference}"
            if nominated
            else f"v{version} not nominated: it does not beat {reference} ({gate.require} rules)"
        )
        reason = f"{head} on {evidence.questions} questions of {evidence.golden}; " + "; ".join(
            check.why for check in checks
        )
    if nominated:
        challenger_version: str | None = version
    else:
        challenger_version = str(challenger.version) if challenger is not None else None
    result = GateDecision(
        name=name,
        nominated=nominated,
        reason=reason,
        version=version,
        champion_version=str(champion.version) if champion is not None else None,
        challenger_version=challenger_version,
        reference=reference,
        checks=checks,
    )
    result.decision_run_id = _record(result, gate, evidence, mlflow_client, settings)
    if nominated:
        mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    return result


@fails_fast("promoting by hand")
def promote_by_hand(name: str, version: str, settings: Settings, *, reason: str) -> GateDecision:
    """The manual override: ``champion`` to ``version`` now, without a canary, recorded as such."""
    if not reason.strip():
        raise ConfigError("a manual promotion needs a reason: pass --reason")
    return _release(name, version, settings, path=ReleasePath.MANUAL, reason=reason)


@fails_fast("releasing without a canary")
def release_without_canary(name: str, version: str, settings: Settings, *, reason: str) -> GateDecision:
    """A nominated model that has no canary (the reranker: no traffic split for it) is released by its
    gate at once, recorded as ``released.by: no-canary``, never as a person's override."""
    return _release(name, version, settings, path=ReleasePath.NO_CANARY, reason=reason)


def _release(name: str, version: str, settings: Settings, *, path: ReleasePath, reason: str) -> GateDecision:
    mlflow_client = client(settings)
    require_registered(mlflow_client, name)
    candidate = _model_version(mlflow_client, name, str(version))
    champion = version_by_alias(mlflow_client, name, CHAMPION, required=False)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    if path is ReleasePath.MANUAL:
        why = f"promoted by hand at {stamp} (no canary): {reason}"
        # The override's own marker, which `twinops registry list` and audits look for.
        mlflow_client.set_model_version_tag(name, candidate.version, MANUAL_TAG, why[:5000])
    else:
        why = f"released at {stamp} without a canary: {reason}"
    record_release(mlflow_client, name, candidate.version, path=path, why=why)
    challenger = version_by_alias(mlflow_client, name, CHALLENGER, required=False)
    previous = f"v{champion.version}" if champion is not None else f"no {CHAMPION!r}"
    return GateDecision(
        name=name,
        nominated=False,
        reason=f"v{candidate.version} is {CHAMPION!r} (was {previous}): {why}",
        version=str(candidate.version),
        champion_version=str(candidate.version),
        challenger_version=str(challenger.version) if challenger is not None else None,
    )


def _model_version(mlflow_client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version(name, version)
    except MlflowException as error:
        raise NotFound(
            f"registered model {name!r} has no version {version}: see `twinops registry list`"
        ) from error


def _record(
    result: GateDecision,
    gate: GateConfig,
    evidence: GateEvidence | None,
    mlflow_client: Any,
    settings: Settings,
) -> str:
    """Write the decision (tags, description, registry run with decision.json); return the run id."""
    decided_at = datetime.now(UTC).isoformat(timespec="seconds")
    decision = "nominated" if result.nominated else "not nominated"
    payload = {
        **result.model_dump(mode="json"),
        "gate": gate.model_dump(mode="json"),
        "evidence": evidence.model_dump(mode="json") if evidence else None,
        "decided_at": decided_at,
    }
    experiment_id = ensure_experiment("registry", settings)
    run = mlflow_client.create_run(
        experiment_id,
        run_name=f"gate-{result.name}-v{result.version}",
        tags={"twinops.stage": "registry", "gate.decision": decision, "gate.model": result.name},
    )
    run_id = run.info.run_id
    mlflow_client.log_param(run_id, "version", result.version)
    mlflow_client.log_param(run_id, "champion_version", str(result.champion_version))
    mlflow_client.log_param(run_id, "reference", str(result.reference))
    for check in result.checks:
        for side, value in (("reference", check.reference), ("challenger", check.challenger)):
            if value is not None and not math.isnan(value):
                mlflow_client.log_metric(run_id, f"{side}.{check.metric}", value)
    mlflow_client.log_text(run_id, json.dumps(payload, indent=2), "gate/decision.json")
    mlflow_client.set_terminated(run_id)

    version = result.version
    for key, value in {
        "gate.decision": decision,
        "gate.reason": result.reason[:5000],
        "gate.compared_to": str(result.reference),
        "gate.decided_at": decided_at,
        "gate.run_id": run_id,
    }.items():
        mlflow_client.set_model_version_tag(result.name, version, key, value)
    mlflow_client.update_model_version(
        result.name, version, description=f"[gate {decided_at}] {result.reason}"[:5000]
    )
    mlflow_client.set_registered_model_tag(
        result.name, "last_gate", f"v{version} {decision}: {result.reason}"[:5000]
    )
    return run_id
