"""Wiring a controller from options: what the CLI, the KFP step and the Deployment all run.

``RolloutOptions`` names the target (an InferenceService, or the local router with ``router``),
how to score (the golden set, or none) and how to read health (``TWINOPS_PROMETHEUS_URL``, else
probing). ``start_rollout`` checks the input in order, cheapest first (steps, interval, then the
target, then the model URI), so bad input is one line and nothing is patched; with ``wait`` it
follows the rollout to its end. A running rollout of the same ``model_uri`` (a retried KFP step, a
restarted pod) is continued, not refused. ``release_challenger`` is the local loop's release
(``twinops run``): the gate's nominee through a short canary on the local router, the same path
a cluster release takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from twinops.errors import ConfigError
from twinops.infra.registry import CHALLENGER, LLM_MODEL, MODELS_SCHEME
from twinops.rollout.controller import RolloutController, Target
from twinops.rollout.health import (
    DEFAULT_ERROR_QUERY,
    DEFAULT_LATENCY_QUERY,
    DEFAULT_REQUESTS_QUERY,
    LOCAL_ERROR_QUERY,
    LOCAL_LATENCY_QUERY,
    LOCAL_REQUESTS_QUERY,
    PROMETHEUS_SETTING,
    HealthSource,
    ProbeHealth,
    PrometheusHealth,
)
from twinops.rollout.models import pin_model_uri
from twinops.rollout.plan import HealthMode, Thresholds, check_approve_at, parse_intervals, parse_steps
from twinops.rollout.scoring import GoldenScorer
from twinops.rollout.state import RolloutState
from twinops.settings import Settings

DEFAULT_NAMESPACE = "twinops"
# The local loop's release (`twinops run`): a short canary that still scores and probes each step.
LOCAL_RELEASE_STEPS = "50,100"
LOCAL_RELEASE_INTERVAL = "0s"
LOCAL_RELEASE_GOLDEN = 4
HEALTH_FLAG = "--health"


class RolloutOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    isvc: str = Field(description="InferenceService name (also the served model's name by default).")
    namespace: str = DEFAULT_NAMESPACE
    router: str | None = Field(None, description="Local router URL: roll out there instead of on Kubernetes.")
    model_name: str | None = Field(None, description="Model name the servers answer to; default: isvc.")
    golden: str | None = Field(
        "latest", description="Golden set (version id, folder, latest); None: no score."
    )
    golden_limit: int = Field(8, ge=1, description="Golden questions per score.")
    golden_max_tokens: int = Field(64, ge=1, description="Longest golden-set answer, in tokens.")
    health: HealthMode = Field(
        "auto",
        description="Where the error rate and latency come from: prometheus (TWINOPS_PROMETHEUS_URL), "
        "probe (requests sent to the canary), or auto: Prometheus when set, else probing on the local "
        "router only (on a cluster, a probe's few requests are no measure of real traffic).",
    )
    probe_requests: int = Field(5, ge=1, description="Requests per probe.")
    kubeconfig: str | None = None
    context: str | None = None
    # PromQL templates; None: Istio's metrics on a cluster, the router's own locally.
    error_query: str | None = None
    latency_query: str | None = None
    requests_query: str | None = None

    @property
    def served_model(self) -> str:
        return self.model_name or self.isvc


def make_target(options: RolloutOptions, settings: Settings, on_event: Callable[[str], None]) -> Target:
    if options.router:
        from twinops.rollout.local import LocalRouterTarget

        return LocalRouterTarget(options.router, settings, name=options.isvc, model_name=options.served_model)
    from twinops.rollout.kserve import KServeTarget, kubernetes_apis

    api, core, coordination = kubernetes_apis(options.kubeconfig, options.context)
    return KServeTarget(
        options.isvc,
        options.namespace,
        api=api,
        core=core,
        coordination=coordination,
        model_name=options.served_model,
        on_event=on_event,
    )


def make_health(options: RolloutOptions, settings: Settings) -> HealthSource:
    """Prometheus, or probing: chosen by ``options.health`` (see ``RolloutOptions``)."""
    local = options.router is not None
    use_prometheus = options.health == "prometheus" or (
        options.health == "auto" and settings.prometheus_url is not None
    )
    if use_prometheus:
        if not settings.prometheus_url:
            raise ConfigError(
                f"{HEALTH_FLAG} prometheus needs {PROMETHEUS_SETTING}: set it (twinops-env sets "
                "kube-prometheus's address) or pass --health probe"
            )
        return PrometheusHealth(
            settings.prometheus_url,
            error_query=options.error_query or (LOCAL_ERROR_QUERY if local else DEFAULT_ERROR_QUERY),
            latency_query=options.latency_query or (LOCAL_LATENCY_QUERY if local else DEFAULT_LATENCY_QUERY),
            requests_query=options.requests_query
            or (LOCAL_REQUESTS_QUERY if local else DEFAULT_REQUESTS_QUERY),
        )
    if options.health == "auto" and not options.router:
        raise ConfigError(
            f"no Prometheus to judge the canary by: set {PROMETHEUS_SETTING} (twinops-env sets "
            f"kube-prometheus's address), or pass {HEALTH_FLAG} probe to judge it by a few requests"
        )
    return ProbeHealth(requests=options.probe_requests)


class NotJudging:
    """The health source of a controller that only reports or records a decision by hand."""

    def read(self, canary, window_seconds: float):
        raise ConfigError("this controller only reports or decides by hand: it reads no canary health")


def make_controller(
    options: RolloutOptions,
    settings: Settings,
    *,
    target: Target | None = None,
    record: bool = True,
    judge: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[str], None] | None = None,
) -> RolloutController:
    """The controller for ``options``. ``judge=False`` (status, a decision by hand) needs no health
    source: asked to read one, it says so in one line."""
    from twinops.rollout.tracking import MlflowRecorder

    on_event = on_event or (lambda _message: None)
    scorer = None
    if options.golden:
        scorer = GoldenScorer(
            settings, golden=options.golden, limit=options.golden_limit, max_tokens=options.golden_max_tokens
        )
    return RolloutController(
        target or make_target(options, settings, on_event),
        health=make_health(options, settings) if judge else NotJudging(),
        scorer=scorer,
        recorder=MlflowRecorder(settings) if record else None,
        model_name=options.served_model,
        sleep=sleep,
        on_event=on_event,
    )


def start_rollout(
    options: RolloutOptions,
    settings: Settings,
    *,
    model_uri: str,
    steps: str,
    interval: str,
    thresholds: Thresholds | None = None,
    approve_at: int | None = None,
    wait: bool = True,
    controller: RolloutController | None = None,
    on_event: Callable[[str], None] | None = None,
) -> RolloutState:
    """Check the input, start the canary, and (with ``wait``) run it to promotion or rollback."""
    parsed_steps = parse_steps(steps)
    intervals = parse_intervals(interval, parsed_steps)
    check_approve_at(approve_at, parsed_steps)
    controller = controller or make_controller(options, settings, on_event=on_event)
    existing = controller.target.load()  # a missing service is reported before the registry is asked
    if existing is not None and not existing.finished and existing.requested_uri == model_uri:
        # The same rollout, started before a retry or a restart: follow it instead of refusing.
        controller.on_event(f"continuing the rollout of {existing.model_uri} at {existing.percent}%")
        return controller.run(existing) if wait else existing
    model = pin_model_uri(model_uri, settings, local=options.router is not None)
    state = controller.start(
        model,
        steps=parsed_steps,
        intervals=intervals,
        thresholds=thresholds or Thresholds(),
        approve_at=approve_at,
    )
    return controller.run(state) if wait else state


class LocalRelease(BaseModel):
    """What the local release decided, and which model serves after it."""

    challenger: str | None = Field(description="The nominee released (NAME vN), None when there was none.")
    state: RolloutState | None = None
    serving: str = Field(description="What the LLM serves now (and why), for the run's printout.")


def release_challenger(
    settings: Settings,
    *,
    router_url: str,
    stable_label: str,
    steps: str = LOCAL_RELEASE_STEPS,
    interval: str = LOCAL_RELEASE_INTERVAL,
    golden: str = "latest",
    golden_limit: int = LOCAL_RELEASE_GOLDEN,
    on_event: Callable[[str], None] | None = None,
    twin: str = LLM_MODEL,
) -> LocalRelease:
    """The gate's nominee of ``twin`` (``twin-llm@challenger`` by default, served as the router's
    canary) through a short canary: scored on the golden set and probed at each step; promoted, it
    takes ``champion`` (and the router's stable slot, unless the canary is one twin's of a
    many-twin server: then the stable server follows the alias); rolled back, it is tagged rejected
    and the stable keeps serving. Each twin has its own rollout (state file, lock, aliases), so
    releasing one leaves every other twin's alias and traffic as they were."""
    options = RolloutOptions(
        isvc=twin,
        model_name=twin,
        router=router_url,
        golden=golden,
        golden_limit=golden_limit,
        golden_max_tokens=32,
    )
    state = start_rollout(
        options,
        settings,
        model_uri=f"{MODELS_SCHEME}{twin}@{CHALLENGER}",
        steps=steps,
        interval=interval,
        on_event=on_event,
    )
    label = f"{state.registry_name} v{state.registry_version}"
    if state.phase == "promoted":
        serving = f"{label}: its canary passed at {steps}% and it took 'champion'"
    else:
        why = "; ".join(state.last_decision.reasons) if state.last_decision else state.phase
        serving = f"{stable_label}: the canary of {label} was rolled back ({why})"
    return LocalRelease(challenger=label, state=state, serving=serving)
