"""The canary controller: start, analyse each step, step up / hold / promote / roll back, record it all.

``RolloutController`` works on any ``Target`` (``KServeTarget`` for an InferenceService,
``LocalRouterTarget`` for the local router) with three pluggable parts: a ``Scorer`` (the golden
set; ``None`` skips scoring), a ``HealthSource`` (Prometheus or probing) and a ``Recorder``
(MLflow: the history, and the release's registry writes; ``None`` records on the target only).

``start`` checks everything before the first patch: a missing service, a combination KServe would
ignore or an unreachable stable model leave the target untouched. ``run`` then drives the rollout
to its end, as its one driver: it holds the target's lease (a Kubernetes Lease, a file lock
locally; another controller that finds it held follows the rollout and takes over if the driver
dies), waits out each step's interval (counted from the last decision, so a restarted controller
does not wait twice) and applies ``gates.decide`` to an analysis of the canary. It reloads the
state from the target before every decision, so a manual ``promote``/``rollback`` from another
process ends it.

Crash safety: a decision is one write to the target carrying the traffic change and the state
together. A finished rollout's registry step comes after it (``Recorder.release``: the promoted
version takes ``champion``, a rolled-back one is tagged rejected), is idempotent, and is marked
done on the target (``registry_synced``) last; a controller that finds a finished rollout not yet
synced does that step first. A restart therefore converges whatever call it died after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from twinops.errors import ConfigError, NotFound, TwinopsError
from twinops.rollout.gates import Analysis, analyse, decide
from twinops.rollout.health import CanaryEndpoint, HealthSource
from twinops.rollout.lease import LeaseHeld, StaleRead
from twinops.rollout.models import PinnedModel
from twinops.rollout.plan import Thresholds, check_approve_at, check_steps
from twinops.rollout.scoring import Scorer
from twinops.rollout.state import Action, Decision, Health, Mode, RolloutState, now

OPENAI_PATH = "/openai/v1"
PAUSE_POLL_SECONDS = 30.0
CONFLICT_RETRIES = 3


class Lease(Protocol):
    renew_every: float

    def acquire(self) -> None: ...
    def renew(self) -> None: ...
    def release(self) -> None: ...


class Target(Protocol):
    name: str
    namespace: str

    def check_start(self, model_uri: str | None = None) -> tuple[Any, Mode]: ...
    def begin(self, state: RolloutState, current: Any) -> RolloutState: ...
    def apply(self, state: RolloutState, decision: Decision) -> None: ...
    def record(self, state: RolloutState) -> None: ...
    def load(self) -> RolloutState | None: ...
    def reconcile(self, state: RolloutState) -> None: ...
    def lease(self) -> Lease: ...
    def stable_url(self) -> str: ...
    def canary(self, state: RolloutState) -> CanaryEndpoint: ...


class Recorder(Protocol):
    def begin(self, state: RolloutState) -> str | None: ...
    def record(self, state: RolloutState, decision: Decision) -> None: ...
    def release(self, state: RolloutState) -> None: ...


def openai_url(url: str) -> str:
    return url.rstrip("/") + OPENAI_PATH


class StaleDecision(TwinopsError):
    """Another writer decided meanwhile (a manual promote or rollback): its state wins."""

    def __init__(self, state: RolloutState) -> None:
        super().__init__("the rollout was decided elsewhere meanwhile")
        self.state = state


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
        clock: Callable[[], datetime] = now,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.health = health
        self.scorer = scorer
        self.recorder = recorder
        self.model_name = model_name
        self.sleep = sleep
        self.clock = clock
        self.on_event = on_event or (lambda _message: None)

    # --- starting ------------------------------------------------------------------------------

    def start(
        self,
        model: PinnedModel,
        *,
        steps: tuple[int, ...],
        intervals: tuple[float, ...],
        thresholds: Thresholds,
        approve_at: int | None = None,
    ) -> RolloutState:
        """Check, score the stable baseline, and put the canary at ``steps[0]`` (one write)."""
        steps = check_steps(steps)
        approve_at = check_approve_at(approve_at, steps)
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
            served_model=self.model_name,
            steps=steps,
            intervals=intervals,
            thresholds=thresholds,
            approve_at=approve_at,
            baseline_score=baseline,
            started_at=self.clock(),
            decisions=[
                Decision(
                    at=self.clock(),
                    action="start",
                    percent=steps[0],
                    reasons=tuple(reasons),
                    baseline=baseline,
                )
            ],
        )
        if self.recorder is not None:
            state.mlflow_run_id = self.recorder.begin(state)
        state = self.target.begin(state, current)
        if self.recorder is not None:
            self.recorder.record(state, state.decisions[-1])
        self.on_event(state.decisions[-1].line())
        return state

    # --- one analysis --------------------------------------------------------------------------

    def observe(self, state: RolloutState) -> tuple[Analysis, float | None, Health | None]:
        """Score and measure the canary at its current step."""
        canary = self.target.canary(state)
        failures: list[str] = []
        unmeasured: list[str] = []
        score = None
        if self.scorer is not None:
            try:
                score = self.scorer(openai_url(canary.url), canary.model)
            except TwinopsError as error:
                failures.append(f"the canary could not be scored ({error})")
        health = None
        try:
            health = self.health.read(canary, state.interval_seconds)
        except TwinopsError as error:
            unmeasured.append(f"the canary's health could not be read ({error})")
        analysis = analyse(
            state,
            score=score,
            health=health,
            scored=self.scorer is not None,
            failures=tuple(failures),
            unmeasured=tuple(unmeasured),
        )
        return analysis, score, health

    def step(self, state: RolloutState) -> RolloutState:
        analysis, score, health = self.observe(state)
        return self._apply(state, decide(state, analysis, score=score, health=health))

    # --- applying a decision -------------------------------------------------------------------

    def _advance(self, state: RolloutState, decision: Decision) -> RolloutState:
        """``state`` once ``decision`` is taken (pure)."""
        decision = decision.model_copy(update={"at": self.clock()})
        update: dict[str, Any] = {"decisions": [*state.decisions, decision]}
        action = decision.action
        if action == "step_up":
            update.update(step_index=state.step_index + 1, phase="running")
        elif action == "pause":
            update["phase"] = "paused"
        elif action == "promote":
            update["phase"] = "promoted"
        elif action == "rollback":
            update["phase"] = "rolled_back"
        if decision.outcome == "fail":
            update["failed_analyses"] = state.failed_analyses + 1
        elif decision.outcome == "inconclusive":
            update["inconclusive_analyses"] = state.inconclusive_analyses + 1
        if action in ("step_up", "pause", "promote"):  # counts are per step, and "in a row"
            update.update(failed_analyses=0, inconclusive_analyses=0)
        return state.model_copy(update=update)

    def _write(self, state: RolloutState, decision: Decision) -> RolloutState:
        """One write of ``decision`` to the target; a 409 re-reads and retries unless someone
        else decided meanwhile (then ``StaleDecision`` carries their state)."""
        for attempt in range(CONFLICT_RETRIES):
            new = self._advance(state, decision)
            try:
                if decision.action in ("hold", "pause"):  # no traffic change: the state only
                    self.target.record(new)
                else:
                    self.target.apply(new, new.decisions[-1])
                return new
            except StaleRead:
                fresh = self.target.load()  # re-read: a status update by KServe also bumps the version
                if fresh is None or fresh.decisions != state.decisions or fresh.phase != state.phase:
                    raise StaleDecision(fresh) from None
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                state = fresh
        raise AssertionError("unreachable")

    def _apply(self, state: RolloutState, decision: Decision) -> RolloutState:
        try:
            new = self._write(state, decision)
        except StaleDecision as stale:
            self.on_event("the rollout was decided elsewhere meanwhile: following that decision")
            return stale.state
        if self.recorder is not None:
            self.recorder.record(new, new.decisions[-1])
        self.on_event(new.decisions[-1].line())
        return self.finish(new) if new.finished else new

    def finish(self, state: RolloutState) -> RolloutState:
        """The registry's part of a finished rollout (idempotent), then mark it done on the target."""
        if not state.finished or state.registry_synced:
            return state
        if self.recorder is not None:
            self.recorder.release(state)
        done = state.model_copy(update={"registry_synced": True})
        self.target.record(done)
        if state.registry_name:
            what = "takes 'champion'" if state.phase == "promoted" else "is tagged rejected"
            self.on_event(f"registry: {state.registry_name} v{state.registry_version} {what}")
        return done

    # --- driving to the end --------------------------------------------------------------------

    def _wait(self, seconds: float, lease: Lease) -> None:
        """Sleep ``seconds``, renewing the lease as often as it needs (``LeaseHeld`` if lost)."""
        while seconds > 0:
            chunk = min(seconds, lease.renew_every)
            self.sleep(chunk)
            seconds -= chunk
            lease.renew()

    def _due_in(self, state: RolloutState) -> float:
        """Seconds left of the current step's interval, counted from the last decision."""
        last = state.last_decision
        if last is None:
            return state.interval_seconds
        return state.interval_seconds - (self.clock() - last.at).total_seconds()

    def run(self, state: RolloutState) -> RolloutState:
        """Drive the rollout to promotion or rollback as its one driver; follow it while another
        controller holds the lease, and take over when that one stops renewing."""
        lease = self.target.lease()
        while True:
            try:
                lease.acquire()
            except LeaseHeld as held:
                self.on_event(f"{held}; following it")
                self.sleep(min(state.interval_seconds, lease.renew_every) or 1.0)
                latest = self.target.load() or state
                if latest.finished and latest.registry_synced:
                    return latest
                state = latest
                continue
            try:
                return self._drive(state, lease)
            finally:
                lease.release()

    def _drive(self, state: RolloutState, lease: Lease) -> RolloutState:
        while True:
            current = self.target.load() or state
            self.target.reconcile(current)
            if current.finished:
                return self.finish(current)
            if current.phase == "paused":
                self._wait(min(PAUSE_POLL_SECONDS, current.interval_seconds) or PAUSE_POLL_SECONDS, lease)
                continue
            due = self._due_in(current)
            if due > 0:
                self._wait(due, lease)
                current = self.target.load() or current
                if current.finished or current.phase == "paused":
                    continue
            analysis, score, health = self.observe(current)
            lease.renew()  # still the driver after a long analysis: else another one decides
            state = self._apply(current, decide(current, analysis, score=score, health=health))

    # --- by hand -------------------------------------------------------------------------------

    def _running(self) -> RolloutState:
        state = self.target.load()
        if state is None or state.finished:
            what = "no rollout" if state is None else f"the last rollout was {state.phase.replace('_', ' ')}"
            raise ConfigError(
                f"no rollout is running on {self.target.namespace}/{self.target.name} ({what}): "
                "start one with `twinops rollout start`"
            )
        return state

    def decide_by_hand(self, action: Action, reason: str) -> RolloutState:
        """``promote`` or ``rollback`` now, whatever the analysis says. ``promote`` on a rollout
        paused for approval approves it: the canary goes on to its next step (or is promoted
        after its last)."""
        state = self._running()
        if action == "promote" and state.phase == "paused":
            last_step = state.step_index + 1 >= len(state.steps)
            decision = Decision(
                action="promote" if last_step else "step_up",
                percent=100 if last_step else state.steps[state.step_index + 1],
                reasons=(f"approved: {reason}",),
                manual=True,
            )
        else:
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
