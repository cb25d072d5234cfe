"""The canary controller: start, observe each step, step up / promote / roll back, record it all.

``RolloutController`` works on any ``Target`` (``KServeTarget`` for an InferenceService,
``LocalRouterTarget`` for the local router) with three pluggable parts: a ``Scorer`` (the golden
set; ``None`` skips scoring), a ``HealthSource`` (Prometheus or probing) and a ``Recorder``
(MLflow; ``None`` records on the target only). ``start`` checks everything before the first patch:
a missing service, a combination KServe would ignore or an unreachable stable model leave the
target untouched. ``run`` then waits one interval per step and applies ``gates.decide``; it reloads
the state from the target after each wait, so a manual ``promote``/``rollback`` from another
process ends it. A restarted controller continues with ``run(target.load())``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from twinops.errors import ConfigError, NotFound, TwinopsError
from twinops.rollout.gates import decide
from twinops.rollout.health import CanaryEndpoint, HealthSource
from twinops.rollout.models import PinnedModel
from twinops.rollout.plan import Thresholds, check_steps
from twinops.rollout.scoring import Scorer
from twinops.rollout.state import Action, Decision, Mode, RolloutState

OPENAI_PATH = "/openai/v1"


class Target(Protocol):
    name: str
    namespace: str

    def check_start(self, model_uri: str | None = None) -> tuple[Any, Mode]: ...
    def begin(self, state: RolloutState, current: Any) -> RolloutState: ...
    def apply(self, state: RolloutState, decision: Decision) -> None: ...
    def record(self, state: RolloutState) -> None: ...
    def load(self) -> RolloutState | None: ...
    def stable_url(self) -> str: ...
    def canary(self, state: RolloutState) -> CanaryEndpoint: ...


class Recorder(Protocol):
    def begin(self, state: RolloutState) -> str | None: ...
    def record(self, state: RolloutState, decision: Decision) -> None: ...
    def promote_model(self, state: RolloutState) -> None: ...


def openai_url(url: str) -> str:
    return url.rstrip("/") + OPENAI_PATH


class RolloutController:
    def __init__(
        self,
        target: Target,
        *,
        health: HealthSource,
        scorer: Scorer | None = None,
        recorder: Recorder | None = None,
        model_name: str,
        sleep: Callable[[float], None] = time.sleep,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.health = health
        self.scorer = scorer
        self.recorder = recorder
        self.model_name = model_name
        self.sleep = sleep
        self.on_event = on_event or (lambda _message: None)

    def start(
        self, model: PinnedModel, *, steps: tuple[int, ...], interval_seconds: float, thresholds: Thresholds
    ) -> RolloutState:
        """Check, score the stable baseline, and put the canary at ``steps[0]``."""
        steps = check_steps(steps)
        current, mode = self.target.check_start(model.uri)
        baseline = None
        if self.scorer is not None:
            stable = self.target.stable_url()
            self.on_event(f"scoring the stable model at {stable} on the golden set (baseline)")
            baseline = self.scorer(openai_url(stable), self.model_name)
        reasons = [f"canary {model.label} at {steps[0]}%"]
        if baseline is not None:
            reasons.append(f"stable scores {baseline:.3f} on the golden set")
        state = RolloutState(
            name=self.target.name,
            namespace=self.target.namespace,
            mode=mode,
            model_uri=model.uri,
            requested_uri=model.requested_uri,
            registry_name=model.registry_name,
            registry_version=model.registry_version,
            steps=steps,
            interval_seconds=interval_seconds,
            thresholds=thresholds,
            baseline_score=baseline,
            decisions=[Decision(action="start", percent=steps[0], reasons=tuple(reasons), baseline=baseline)],
        )
        if self.recorder is not None:
            state.mlflow_run_id = self.recorder.begin(state)
        state = self.target.begin(state, current)
        if self.recorder is not None:
            self.recorder.record(state, state.decisions[-1])
        self.on_event(state.decisions[-1].line())
        return state

    def observe(self, state: RolloutState) -> Decision:
        """Score and measure the canary at its current step, and decide."""
        canary = self.target.canary(state)
        problems: list[str] = []
        score = None
        if self.scorer is not None:
            try:
                score = self.scorer(openai_url(canary.url), canary.model)
            except TwinopsError as error:
                problems.append(f"the canary could not be scored ({error})")
        try:
            health = self.health.read(canary, state.interval_seconds)
        except TwinopsError as error:
            health = None
            problems.append(f"the canary's health could not be read ({error})")
        return decide(state, score=score, health=health, problems=tuple(problems))

    def _apply(self, state: RolloutState, decision: Decision) -> RolloutState:
        update: dict[str, Any] = {"decisions": [*state.decisions, decision]}
        if decision.action == "step_up":
            update["step_index"] = state.step_index + 1
        elif decision.action == "promote":
            update["phase"] = "promoted"
        elif decision.action == "rollback":
            update["phase"] = "rolled_back"
        new = state.model_copy(update=update)
        self.target.apply(new, decision)
        if decision.action == "promote" and self.recorder is not None:
            self.recorder.promote_model(new)
        if self.recorder is not None:
            self.recorder.record(new, decision)
        self.on_event(decision.line())
        return new

    def step(self, state: RolloutState) -> RolloutState:
        return self._apply(state, self.observe(state))

    def run(self, state: RolloutState) -> RolloutState:
        """Observe and decide once per interval until the canary is promoted or rolled back."""
        while state.phase == "running":
            self.sleep(state.interval_seconds)
            current = self.target.load()
            if current is not None and current.phase != "running":
                return current  # promoted or rolled back by hand meanwhile
            state = self.step(current or state)
        return state

    def _running(self) -> RolloutState:
        state = self.target.load()
        if state is None or state.phase != "running":
            what = "no rollout" if state is None else f"the last rollout was {state.phase.replace('_', ' ')}"
            raise ConfigError(
                f"no rollout is running on {self.target.namespace}/{self.target.name} ({what}): "
                "start one with `twinops rollout start`"
            )
        return state

    def decide_by_hand(self, action: Action, reason: str) -> RolloutState:
        """``promote`` or ``rollback`` now, whatever the gates say."""
        state = self._running()
        percent = 100 if action == "promote" else 0
        decision = Decision(action=action, percent=percent, reasons=(reason,), manual=True)
        return self._apply(state, decision)

    def status(self) -> RolloutState:
        state = self.target.load()
        if state is None:
            raise NotFound(
                f"no rollout was ever recorded on {self.target.namespace}/{self.target.name}: "
                "start one with `twinops rollout start`"
            )
        return state
