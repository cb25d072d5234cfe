"""What a rollout is asked to do, checked before anything is patched.

``parse_steps("10,25,50,100")`` and ``parse_intervals("1m,5m", steps)`` turn the CLI's text into
the plan; ``Thresholds`` are the gates every step must pass and how many failed or inconclusive
analyses a canary may have before it is rolled back (Flagger's ``threshold``). Each bad value is
one ``ConfigError`` line naming the flag, raised before the controller touches a target.

The defaults live here once (``DEFAULT_STEPS``, ``DEFAULT_INTERVAL``, ``Thresholds()``): the CLI,
the KFP component, the pipeline and ``python -m twinops.rollout`` all read them.
"""

from __future__ import annotations

import itertools
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from twinops.domain.progress import parse_duration
from twinops.errors import ConfigError

STEPS_FLAG = "--steps"
INTERVAL_FLAG = "--interval"
APPROVE_FLAG = "--approve-at"
DEFAULT_STEPS = "10,25,50,100"
DEFAULT_INTERVAL = "5m"
# Where a canary's error rate and latency come from (RolloutOptions.health, --health).
HealthMode = Literal["auto", "prometheus", "probe"]
HEALTH_MODES: tuple[str, ...] = get_args(HealthMode)


def parse_steps(text: str) -> tuple[int, ...]:
    """``"10,25,50,100"`` → ``(10, 25, 50, 100)``: whole percents, strictly increasing, in 1..100."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"{STEPS_FLAG} is empty: give traffic percents such as 10,25,50,100")
    try:
        steps = tuple(int(part) for part in parts)
    except ValueError as error:
        raise ConfigError(
            f"{STEPS_FLAG} {text!r} is not a list of whole percents: use e.g. 10,25,50,100"
        ) from error
    return check_steps(steps)


def check_steps(steps: tuple[int, ...]) -> tuple[int, ...]:
    if not steps:
        raise ConfigError(f"{STEPS_FLAG} is empty: give traffic percents such as 10,25,50,100")
    out_of_range = [step for step in steps if not 0 < step <= 100]
    if out_of_range:
        raise ConfigError(
            f"{STEPS_FLAG} {','.join(map(str, steps))}: {out_of_range[0]} is not a traffic percent in 1..100"
        )
    for before, after in itertools.pairwise(steps):
        if after <= before:
            raise ConfigError(
                f"{STEPS_FLAG} {','.join(map(str, steps))} does not increase ({before} then {after}): "
                "each step must send more traffic to the canary than the last"
            )
    return steps


def parse_interval(text: str) -> float:
    """``"5m"`` → 300.0 seconds (``domain.progress.parse_duration``); a bad value names the flag."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise ConfigError(f"{INTERVAL_FLAG} {error}") from None


def parse_intervals(text: str, steps: tuple[int, ...]) -> tuple[float, ...]:
    """One duration for every step (``"5m"``), or one per step (``"1m,5m,5m,10m"``)."""
    parts = [part for part in text.split(",") if part.strip()] or [text]
    seconds = tuple(parse_interval(part) for part in parts)
    if len(seconds) == 1:
        return seconds * len(steps)
    if len(seconds) != len(steps):
        raise ConfigError(
            f"{INTERVAL_FLAG} {text!r} gives {len(seconds)} durations for {len(steps)} steps: give one "
            "duration for all steps or one per step"
        )
    return seconds


def check_approve_at(approve_at: int | None, steps: tuple[int, ...]) -> int | None:
    """The step (a percent of ``steps``) after whose analysis the rollout waits for a person."""
    if approve_at is not None and approve_at not in steps:
        raise ConfigError(
            f"{APPROVE_FLAG} {approve_at} is not one of the steps {','.join(map(str, steps))}: "
            "name the traffic percent after which to wait for `twinops rollout promote`"
        )
    return approve_at


class Thresholds(BaseModel):
    """The gates of every step, and how many bad analyses a canary may have before it is rolled back.

    An analysis *fails* when a gate is measured and missed; it is *inconclusive* when a gate could
    not be measured (no traffic in Prometheus, an unreachable canary). Neither moves the canary up:
    it stays at its step and is analysed again after the step's interval. The canary is rolled back
    at ``failure_threshold`` failed analyses, or ``inconclusive_limit`` inconclusive ones, in a row.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_error_rate: float = Field(0.02, ge=0, le=1, description="Largest share of failed requests.")
    max_p95_latency_s: float = Field(10.0, gt=0, description="Largest 95th-percentile latency, seconds.")
    max_score_drop: float = Field(
        0.05, ge=0, description="How far the canary's golden-set score may fall below the stable's."
    )
    min_score: float | None = Field(None, description="An absolute floor for the golden-set score.")
    failure_threshold: int = Field(
        2, ge=1, description="Failed analyses in a row that roll the canary back (1: the first one)."
    )
    inconclusive_limit: int = Field(
        3, ge=1, description="Inconclusive analyses (a gate not measured) in a row that roll it back."
    )
