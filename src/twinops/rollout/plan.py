"""What a rollout is asked to do, checked before anything is patched.

``parse_steps("10,25,50,100")`` and ``parse_interval("5m")`` turn the CLI's text into the plan;
``Thresholds`` are the gates every step must pass. Each bad value is one ``ConfigError`` line
naming the flag, raised before the controller touches a target.
"""

from __future__ import annotations

import itertools
import math
import re

from pydantic import BaseModel, ConfigDict, Field

from twinops.errors import ConfigError

STEPS_FLAG = "--steps"
INTERVAL_FLAG = "--interval"
_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


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
    """``"5m"`` → 300.0 seconds. Units ms, s, m, h, combinable (``1h30m``); a bare number is seconds."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        seconds = None
    if seconds is None:
        parts = _INTERVAL_PART.findall(cleaned)
        if not parts or "".join(number + unit for number, unit in parts) != cleaned:
            raise ConfigError(
                f"{INTERVAL_FLAG} {text!r} does not parse: use a duration such as 30s, 5m, 1h or 1h30m"
            )
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{INTERVAL_FLAG} {text!r} must be a duration of zero or more seconds")
    return seconds


class Thresholds(BaseModel):
    """The gates of every step: a canary failing any one is rolled back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_error_rate: float = Field(0.02, ge=0, le=1, description="Largest share of failed requests.")
    max_p95_latency_s: float = Field(10.0, gt=0, description="Largest 95th-percentile latency, seconds.")
    max_score_drop: float = Field(
        0.05, ge=0, description="How far the canary's golden-set score may fall below the stable's."
    )
    min_score: float | None = Field(None, description="An absolute floor for the golden-set score.")
