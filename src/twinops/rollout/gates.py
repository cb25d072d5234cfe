"""The analysis at a step and the decision it leads to (pure functions of what was measured).

An analysis checks every gate the rollout has: the golden-set score (no more than
``max_score_drop`` below the stable's baseline, and above ``min_score`` when set) when a scorer is
configured, the error rate (at most ``max_error_rate``) and the p95 latency (at most
``max_p95_latency_s``). Its outcome is one of three, as in Flagger and Argo Rollouts:

- **pass**: every gate measured and met;
- **fail**: a gate measured and missed, or the canary itself failed (it could not be scored);
- **inconclusive**: nothing failed, but a gate could not be measured (no traffic in Prometheus's
  window, Prometheus unreachable). Measuring nothing is never a pass.

A pass steps up (or promotes at the last step, or pauses at ``approve_at`` for a person); a fail
or an inconclusive analysis holds the canary at its step for another interval, and rolls it back
once ``failure_threshold`` failures or ``inconclusive_limit`` inconclusive analyses come in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twinops.rollout.plan import Thresholds
from twinops.rollout.state import Decision, Health, Outcome, RolloutState


@dataclass
class Analysis:
    """What one look at the canary found: gates met, gates missed, gates not measured."""

    met: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)

    def check(self, ok: bool, reason: str) -> None:
        (self.met if ok else self.missed).append(reason)

    @property
    def outcome(self) -> Outcome:
        if self.missed:
            return "fail"
        if self.unmeasured or not self.met:
            return "inconclusive"
        return "pass"


def analyse(
    state: RolloutState,
    *,
    score: float | None,
    health: Health | None,
    scored: bool,
    failures: tuple[str, ...] = (),
    unmeasured: tuple[str, ...] = (),
) -> Analysis:
    """Check each gate. ``scored``: a golden-set score was expected (a scorer is configured);
    ``failures``: the canary failed a measurement (it could not be scored); ``unmeasured``: a
    measurement could not be taken for a reason outside the canary (Prometheus unreachable)."""
    thresholds: Thresholds = state.thresholds
    analysis = Analysis(missed=list(failures), unmeasured=list(unmeasured))
    if score is not None:
        baseline = state.baseline_score
        if baseline is not None:
            floor = baseline - thresholds.max_score_drop
            analysis.check(
                score >= floor,
                f"score {score:.3f} {'≥' if score >= floor else '<'} {floor:.3f} "
                f"(stable {baseline:.3f} - {thresholds.max_score_drop:g})",
            )
        if thresholds.min_score is not None:
            ok = score >= thresholds.min_score
            analysis.check(ok, f"score {score:.3f} {'≥' if ok else '<'} floor {thresholds.min_score:g}")
    elif scored and not failures:
        analysis.unmeasured.append("no golden-set score")
    if health is not None:
        if health.error_rate is None:
            analysis.unmeasured.append(f"no error rate from {health.source} (no requests in the window?)")
        else:
            ok = health.error_rate <= thresholds.max_error_rate
            analysis.check(
                ok, f"errors {health.error_rate:.1%} {'≤' if ok else '>'} {thresholds.max_error_rate:.1%}"
            )
        if health.p95_latency_s is None:
            analysis.unmeasured.append(f"no p95 latency from {health.source}")
        else:
            ok = health.p95_latency_s <= thresholds.max_p95_latency_s
            analysis.check(
                ok,
                f"p95 {health.p95_latency_s:.2f}s {'≤' if ok else '>'} {thresholds.max_p95_latency_s:g}s",
            )
    elif not unmeasured:
        analysis.unmeasured.append("no health reading")
    return analysis


def decide(
    state: RolloutState, analysis: Analysis, *, score: float | None, health: Health | None
) -> Decision:
    """The decision after one analysis of the canary at ``state.percent``."""
    thresholds = state.thresholds
    common = {"score": score, "baseline": state.baseline_score, "health": health, "outcome": analysis.outcome}
    if analysis.outcome == "pass":
        reasons = tuple(analysis.met)
        if state.step_index + 1 >= len(state.steps):
            return Decision(action="promote", percent=100, reasons=reasons, **common)
        if state.approve_at == state.percent:
            return Decision(action="pause", percent=state.percent, reasons=reasons, **common)
        return Decision(
            action="step_up", percent=state.steps[state.step_index + 1], reasons=reasons, **common
        )
    if analysis.outcome == "fail":
        count, limit, what = state.failed_analyses + 1, thresholds.failure_threshold, "failed analysis"
        why = analysis.missed + analysis.unmeasured
    else:
        count, limit, what = (
            state.inconclusive_analyses + 1,
            thresholds.inconclusive_limit,
            "inconclusive analysis",
        )
        why = [f"not measured: {reason}" for reason in analysis.unmeasured or ["nothing"]]
    reasons = (f"{what} {count} of {limit}", *why)
    if count >= limit:
        return Decision(action="rollback", percent=0, reasons=reasons, **common)
    return Decision(action="hold", percent=state.percent, reasons=reasons, **common)
