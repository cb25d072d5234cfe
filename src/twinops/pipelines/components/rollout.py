# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The rollout component: a canary of the registered twin on its InferenceService, to the end."""

from kfp import dsl
from kfp.dsl import Markdown, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def rollout(
    metrics: Output[Metrics],
    report: Output[Markdown],
    isvc: str = "twin-llm",
    namespace: str = "twinops",
    model_uri: str = "models:/twin-llm@challenger",
    steps: str = "10,25,50,100",
    interval: str = "5m",
    golden: str = "latest",
    thresholds: dict = {},
    approve_at: int = 0,
    health: str = "auto",
) -> str:
    """Roll a registered model out on a KServe InferenceService as a canary, and promote or roll back.

    Calls ``twinops.rollout.start_rollout``: the deployment mode is read from the InferenceService
    (Knative: ``canaryTrafficPercent`` with tag routing; Standard: ``spec.canary[]``), the canary
    takes each traffic step in turn, and at each one is scored on the golden set and checked for
    error rate and p95 latency (Prometheus at ``TWINOPS_PROMETHEUS_URL``). A failed or
    inconclusive analysis holds it at its step; too many in a row roll it back. After the last
    step the pinned version becomes the predictor and takes the MLflow ``champion`` alias (the
    release is its only writer); a rolled-back version is tagged rejected. Every decision is an
    MLflow run in ``twinops-rollout`` and an annotation on the InferenceService. One controller
    drives a rollout (a Lease): when the ``twinops-rollout`` Deployment already drives it, this step
    follows it to the end. The run's service account must be allowed to get and patch
    InferenceServices and Leases in ``namespace`` (the ``twinops-rollout`` Role).

    Args:
        isvc: The InferenceService to roll out on (its name is also the served model's name).
        namespace: Its namespace.
        model_uri: What the canary serves: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a
            storage URI; an alias is pinned to its version at the start. The default is the
            gate's nominee, ``challenger``.
        steps: Traffic percents for the canary, increasing, up to 100.
        interval: Time at each step (``30s``, ``5m``, ``1h``), or one per step (``1m,5m,5m,10m``).
        golden: Golden set to score on (``latest``, a version id, or ``none``).
        thresholds: Gates as a mapping (``max_error_rate``, ``max_p95_latency_s``,
            ``max_score_drop``, ``min_score``, ``failure_threshold``, ``inconclusive_limit``); empty
            means the defaults.
        approve_at: After this step's analysis passes, wait for ``twinops rollout promote``
            (0: never wait).
        health: ``prometheus``, ``probe``, or ``auto`` (Prometheus when configured).
        metrics: ``promoted`` (1 or 0), the final traffic percent and the number of decisions.
        report: Every decision with its traffic percent, score, error rate, latency and reasons.

    Returns:
        How the rollout ended: ``promoted`` or ``rolled_back``.
    """
    from twinops.pipelines import artifacts
    from twinops.rollout import RolloutOptions, Thresholds, start_rollout

    settings = artifacts.component_settings()
    options = RolloutOptions(
        isvc=isvc, namespace=namespace, golden=None if golden == "none" else golden, health=health
    )
    state = start_rollout(
        options,
        settings,
        model_uri=model_uri,
        steps=steps,
        interval=interval,
        thresholds=Thresholds.model_validate(dict(thresholds)),
        approve_at=approve_at or None,
        on_event=print,
    )
    metrics.log_metric("promoted", float(state.phase == "promoted"))
    metrics.log_metric("traffic_percent", float(state.percent))
    metrics.log_metric("decisions", float(len(state.decisions)))
    rows = {
        f"{decision.at:%H:%M:%S} {decision.action}": f"{decision.percent}%: {'; '.join(decision.reasons)}"
        for decision in state.decisions
    }
    title = f"Rollout of {state.model_uri} on {namespace}/{isvc} ({state.mode}): {state.phase}"
    artifacts.write_text(report, artifacts.markdown_table(title, rows))
    return state.phase
