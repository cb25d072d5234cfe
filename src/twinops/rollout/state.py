"""The record of one rollout: its plan, where it stands, and every decision taken.

The state travels with the target (an annotation on the InferenceService, a file beside the local
router), written in the same patch as the traffic change it records, so ``status``, ``promote``
and ``rollback`` from another process, or a restarted controller pod, see the same rollout and
never a traffic split that disagrees with it.

Phases: ``running`` (analysed once per step interval), ``paused`` (passed the ``--approve-at`` step
and waits for ``twinops rollout promote``), then ``promoted`` or ``rolled_back``. A finished rollout
also carries ``registry_synced``: whether the registry has caught up with the decision (the
promoted version took ``champion``, or the rolled-back one was tagged rejected). A controller that
finds a finished rollout not yet synced finishes that step first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twinops.rollout.plan import Thresholds

Action = Literal["start", "step_up", "hold", "pause", "promote", "rollback"]
Phase = Literal["running", "paused", "promoted", "rolled_back"]
Outcome = Literal["pass", "fail", "inconclusive"]
FINISHED: tuple[Phase, ...] = ("promoted", "rolled_back")
Mode = Literal["Knative", "Standard", "local"]


def now() -> datetime:
    return datetime.now(UTC)


class Health(BaseModel):
    """The canary's live behaviour over the last interval."""

    model_config = ConfigDict(frozen=True)

    error_rate: float | None = Field(description="Share of failed requests (5xx or no answer), 0..1.")
    p95_latency_s: float | None = Field(description="95th-percentile latency in seconds.")
    requests: float | None = Field(None, description="Requests seen (per second for Prometheus).")
    source: str = Field(description="prometheus URL or 'probe'.")


class Decision(BaseModel):
    """One step of the rollout: what was decided, at which traffic percent, and why."""

    model_config = ConfigDict(frozen=True)

    at: datetime = Field(default_factory=now)
    action: Action
    percent: int = Field(description="Traffic to the canary once the decision is applied.")
    outcome: Outcome | None = Field(None, description="The analysis behind it (None: by hand, or start).")
    reasons: tuple[str, ...] = ()
    score: float | None = None
    baseline: float | None = None
    health: Health | None = None
    manual: bool = False

    def line(self) -> str:
        """``step_up to 25%: score 0.41 ≥ 0.39; errors 0.0% ≤ 2.0%; p95 0.8s ≤ 10s``."""
        head = {
            "start": f"start at {self.percent}%",
            "step_up": f"step up to {self.percent}%",
            "hold": f"hold at {self.percent}%",
            "pause": f"pause at {self.percent}% for approval (`twinops rollout promote`)",
            "promote": "promote (canary takes 100%)",
            "rollback": "roll back (canary at 0%)",
        }[self.action]
        who = " (manual)" if self.manual else ""
        return f"{head}{who}: " + "; ".join(self.reasons) if self.reasons else f"{head}{who}"


class RolloutState(BaseModel):
    """Everything needed to continue, promote or roll back a rollout from any process."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="InferenceService (or local router) name.")
    namespace: str
    mode: Mode
    model_uri: str = Field(description="What the canary serves, pinned (models:/NAME/VERSION).")
    requested_uri: str = Field(description="What the user asked for (may name an alias).")
    registry_name: str | None = None
    registry_version: str | None = None
    served_model: str | None = Field(
        None,
        description="The model name the canary is scored as (a twin's, on a server of many twins); "
        "None: the target's own. Recorded so that a controller that takes the rollout over scores "
        "the same twin.",
    )
    canary_name: str | None = Field(None, description="Standard mode: the spec.canary[] predictor name.")
    steps: tuple[int, ...]
    intervals: tuple[float, ...] = Field(description="Seconds at each step, one per step.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    approve_at: int | None = Field(None, description="Wait for a person after this step's analysis.")
    step_index: int = 0
    phase: Phase = "running"
    failed_analyses: int = Field(0, description="Failed analyses in a row at the current step.")
    inconclusive_analyses: int = Field(0, description="Inconclusive analyses in a row.")
    registry_synced: bool = Field(False, description="The registry caught up with a finished rollout.")
    previous_predictor: dict[str, Any] = Field(default_factory=dict)
    baseline_score: float | None = None
    mlflow_run_id: str | None = None
    started_at: datetime = Field(default_factory=now)
    decisions: list[Decision] = Field(default_factory=list)

    @property
    def percent(self) -> int:
        """Traffic the canary has now."""
        if self.phase == "promoted":
            return 100
        if self.phase == "rolled_back":
            return 0
        return self.steps[self.step_index]

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def interval_seconds(self) -> float:
        """How long the canary stays at its current step before the next analysis."""
        return self.intervals[min(self.step_index, len(self.intervals) - 1)]

    @property
    def last_decision(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None
