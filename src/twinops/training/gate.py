"""The promotion gate: move ``champion`` to the ``challenger`` only when it beats the champion on
the configured metrics by the configured margins, and record why either way.

The decision is written three times so nobody has to guess later: tags ``gate.*`` and the
description on the challenger version, a tag ``last_gate`` on the registered model, and an MLflow
run in ``twinops-registry`` with both versions' metrics and ``gate/decision.json``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twinops.errors import ConfigError
from twinops.settings import Settings
from twinops.training.registry import (
    CHALLENGER,
    CHAMPION,
    LLM_MODEL,
    RERANKER_MODEL,
    client,
    require_registered,
    version_by_alias,
    version_metrics,
)
from twinops.training.tracking import ensure_experiment


class MetricRule(BaseModel):
    """One metric the challenger must improve: by more than 0, ≥ ``min_delta`` and ≥ ``min_relative``."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    direction: Literal["lower", "higher"] = Field(description="Which way is better (perplexity: lower).")
    min_delta: float = Field(0.0, ge=0.0, description="Absolute improvement required.")
    min_relative: float = Field(0.0, ge=0.0, description="Improvement relative to the champion (0.02 = 2%).")


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[MetricRule] = Field(min_length=1)
    require: Literal["all", "any"] = Field("all", description="Promote when all (or any) rules pass.")


DEFAULT_GATES: dict[str, GateConfig] = {
    LLM_MODEL: GateConfig(rules=[MetricRule(metric="eval_perplexity", direction="lower")]),
    RERANKER_MODEL: GateConfig(rules=[MetricRule(metric="eval_mrr", direction="higher")]),
}


class MetricCheck(BaseModel):
    metric: str
    direction: str
    champion: float
    challenger: float
    improvement: float
    relative_improvement: float
    passed: bool


class PromotionResult(BaseModel):
    name: str
    promoted: bool
    reason: str
    champion_version: str = Field(description="The champion after the decision.")
    challenger_version: str
    previous_champion_version: str | None = None
    checks: list[MetricCheck] = Field(default_factory=list)
    decision_run_id: str | None = None


def load_gate(path: str | Path, name: str) -> GateConfig:
    """The gate for ``name`` from a YAML mapping ``{model name: {rules: [...], require: all}}``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as error:
        raise ConfigError(f"gate config {path} does not exist: pass an existing YAML file") from error
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"gate config {path} is not readable YAML: fix the file") from error
    if not isinstance(raw, dict) or name not in raw:
        raise ConfigError(f"gate config {path} has no entry for {name!r}: add `{name}: {{rules: [...]}}`")
    try:
        return GateConfig.model_validate(raw[name])
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"gate config {path}: `{name}.{where}` {first['msg']}: fix that entry") from error


def check_rule(rule: MetricRule, champion: float, challenger: float) -> MetricCheck:
    improvement = champion - challenger if rule.direction == "lower" else challenger - champion
    # A zero champion makes any gain infinitely large in relative terms.
    relative = improvement / abs(champion) if champion != 0 else (math.inf if improvement > 0 else 0.0)
    passed = improvement > 0 and improvement >= rule.min_delta and relative >= rule.min_relative
    return MetricCheck(
        metric=rule.metric,
        direction=rule.direction,
        champion=champion,
        challenger=challenger,
        improvement=improvement,
        relative_improvement=relative,
        passed=passed,
    )


def _describe(check: MetricCheck, rule: MetricRule) -> str:
    verdict = "beats" if check.passed else "does not beat"
    return (
        f"{check.metric} {check.challenger:.4g} vs {check.champion:.4g} ({check.direction} is better): "
        f"{verdict} the margin (Δ={check.improvement:.4g}, needs > 0, ≥ {rule.min_delta:g} "
        f"and ≥ {rule.min_relative:.2%} relative)"
    )


def promote(name: str, settings: Settings, gate: GateConfig | None = None) -> PromotionResult:
    """Compare ``challenger`` to ``champion`` of ``name`` and move ``champion`` when the gate passes.

    The first version becomes champion directly. A missing registered model, alias or metric
    raises one line before anything is written.
    """
    gate = gate or DEFAULT_GATES.get(name)
    if gate is None:
        raise ConfigError(
            f"no promotion gate is configured for {name!r}: pass --gate YAML with an entry for it"
        )
    mlflow_client = client(settings)
    require_registered(mlflow_client, name)
    challenger = version_by_alias(mlflow_client, name, CHALLENGER)
    champion = version_by_alias(mlflow_client, name, CHAMPION, required=False)
    checks: list[MetricCheck] = []
    if champion is None:
        promoted, reason = True, f"first champion: no {CHAMPION!r} yet, version {challenger.version} takes it"
    elif champion.version == challenger.version:
        promoted, reason = False, f"version {challenger.version} is already {CHAMPION!r}: nothing to compare"
    else:
        checks, lines = _compare(gate, champion, challenger, mlflow_client)
        passed = [c.passed for c in checks]
        promoted = all(passed) if gate.require == "all" else any(passed)
        head = (
            f"promoted v{challenger.version} over v{champion.version}"
            if promoted
            else f"kept v{champion.version}: v{challenger.version} failed the gate ({gate.require} rules)"
        )
        reason = f"{head}; " + "; ".join(lines)
    result = PromotionResult(
        name=name,
        promoted=promoted,
        reason=reason,
        champion_version=str(challenger.version if promoted else champion.version),
        challenger_version=str(challenger.version),
        previous_champion_version=str(champion.version) if champion is not None else None,
        checks=checks,
    )
    result.decision_run_id = _record(result, gate, mlflow_client, settings)
    if promoted:
        mlflow_client.set_registered_model_alias(name, CHAMPION, challenger.version)
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    return result


def _compare(gate: GateConfig, champion: Any, challenger: Any, mlflow_client: Any):
    champion_metrics = version_metrics(champion, mlflow_client)
    challenger_metrics = version_metrics(challenger, mlflow_client)
    checks, lines = [], []
    for rule in gate.rules:
        for label, version, metrics in (
            (CHAMPION, champion, champion_metrics),
            (CHALLENGER, challenger, challenger_metrics),
        ):
            if rule.metric not in metrics:
                raise ConfigError(
                    f"metric {rule.metric!r} is missing on {champion.name} v{version.version} ({label}): "
                    "evaluate it (`twinops evaluate`) or gate on a metric both versions have"
                )
        check = check_rule(rule, champion_metrics[rule.metric], challenger_metrics[rule.metric])
        checks.append(check)
        lines.append(_describe(check, rule))
    return checks, lines


def _record(result: PromotionResult, gate: GateConfig, mlflow_client: Any, settings: Settings) -> str:
    """Write the decision (tags, description, registry run with decision.json); return the run id."""
    decided_at = datetime.now(UTC).isoformat(timespec="seconds")
    decision = "promoted" if result.promoted else "rejected"
    payload = {
        **result.model_dump(mode="json"),
        "gate": gate.model_dump(mode="json"),
        "decided_at": decided_at,
    }
    experiment_id = ensure_experiment("registry", settings)
    run = mlflow_client.create_run(
        experiment_id,
        run_name=f"gate-{result.name}-v{result.challenger_version}",
        tags={"twinops.stage": "registry", "gate.decision": decision, "gate.model": result.name},
    )
    run_id = run.info.run_id
    mlflow_client.log_param(run_id, "challenger_version", result.challenger_version)
    mlflow_client.log_param(run_id, "previous_champion_version", str(result.previous_champion_version))
    for check in result.checks:
        mlflow_client.log_metric(run_id, f"champion.{check.metric}", check.champion)
        mlflow_client.log_metric(run_id, f"challenger.{check.metric}", check.challenger)
    mlflow_client.log_text(run_id, json.dumps(payload, indent=2), "gate/decision.json")
    mlflow_client.set_terminated(run_id)

    version = result.challenger_version
    for key, value in {
        "gate.decision": decision,
        "gate.reason": result.reason[:5000],
        "gate.compared_to": str(result.previous_champion_version),
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
