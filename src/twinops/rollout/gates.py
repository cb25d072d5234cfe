"""The decision at a step: step up, promote, or roll back (a pure function of what was measured).

A canary passes a step when its golden-set score is no more than ``max_score_drop`` below the
stable's baseline (and above ``min_score`` when set), its error rate is at most
``max_error_rate`` and its p95 latency at most ``max_p95_latency_s``. Passing at the last step
promotes; passing earlier steps up; failing any gate, a measurement that could not be taken, or
measuring nothing at all rolls back: with no evidence of health the safe side is the stable model.
"""

from __future__ import annotations

from twinops.rollout.plan import Thresholds
from twinops.rollout.state import Decision, Health, RolloutState


def _score_checks(
    score: float | None, baseline: float | None, thresholds: Thresholds
) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    if score is None:
        return checks
    if baseline is not None:
        floor = baseline - thresholds.max_score_drop
        checks.append(
            (
                score >= floor,
                f"score {score:.3f} {'≥' if score >= floor else '<'} {floor:.3f} "
                f"(stable {baseline:.3f} - {thresholds.max_score_drop:g})",
            )
        )
    if thresholds.min_score is not None:
        ok = score >= thresholds.min_score
        checks.append((ok, f"score {score:.3f} {'≥' if ok else '<'} floor {thresholds.min_score:g}"))
    return checks


def _health_checks(health: Health | None, thresholds: Thresholds) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    if health is None:
        return checks
    if health.error_rate is not None:
        ok = health.error_rate <= thresholds.max_error_rate
        checks.append(
            (
                ok,
                f"errors {health.error_rate:.1%} {'≤' if ok else '>'} {thresholds.max_error_rate:.1%}",
            )
        )
    if health.p95_latency_s is not None:
        ok = health.p95_latency_s <= thresholds.max_p95_latency_s
        checks.append(
            (
                ok,
                f"p95 {health.p95_latency_s:.2f}s {'≤' if ok else '>'} {thresholds.max_p95_latency_s:g}s",
            )
        )
    return checks


def decide(
    state: RolloutState,
    *,
    score: float | None,
    health: Health | None,
    problems: tuple[str, ...] = (),
) -> Decision:
    """The decision after observing the canary at ``state.percent`` for one interval.

    ``problems`` are measurements that failed (an unreachable canary or Prometheus): each one
    rolls back, as a failed gate does.
    """
    checks = _score_checks(score, state.baseline_score, state.thresholds)
    checks += _health_checks(health, state.thresholds)
    failed = [reason for ok, reason in checks if not ok] + list(problems)
    if not checks and not failed:
        failed = ["nothing was measured (no golden-set score, no error rate, no latency)"]
    common = {"score": score, "baseline": state.baseline_score, "health": health}
    if failed:
        return Decision(action="rollback", percent=0, reasons=tuple(failed), **common)
    reasons = tuple(reason for _, reason in checks)
    if state.step_index + 1 >= len(state.steps):
        return Decision(action="promote", percent=100, reasons=reasons, **common)
    return Decision(action="step_up", percent=state.steps[state.step_index + 1], reasons=reasons, **common)
