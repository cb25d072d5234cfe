"""Every rollout decision in MLflow, and the release's registry writes.

One run per rollout in the experiment ``twinops-rollout``: the plan as params, each decision as
metrics at its step (``traffic_percent``, ``canary_score``, ``baseline_score``, ``error_rate``,
``p95_latency_s``) and a ``decision.NN`` tag with its one-line reason; the run ends on promotion
or rollback with an ``outcome`` tag and the whole state as ``rollout.json``.

``release`` is the registry's side of a finished rollout, and the only writer of ``champion``
(the gate only nominates a ``challenger``): a promoted version takes ``champion``; a rolled-back
one is tagged ``rejected`` with the reasons, so the gate never nominates it again. Either way it
loses ``challenger`` if that alias still names it. Every write is idempotent, so a controller
restarted halfway through does it again safely.
"""

from __future__ import annotations

from twinops.errors import ServiceUnavailable
from twinops.infra.registry import (
    REJECTED_TAG,
    ReleasePath,
    client,
    fast_fail,
    record_release,
    spend_challenger,
)
from twinops.rollout.state import Decision, RolloutState
from twinops.settings import Settings

STAGE = "rollout"


def _unavailable(error: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"MLflow refused a rollout record ({str(error).splitlines()[0][:160]}): run `twinops services up` "
        "or fix TWINOPS_MLFLOW_TRACKING_URI",
        setting="TWINOPS_MLFLOW_TRACKING_URI",
    )


class MlflowRecorder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def begin(self, state: RolloutState) -> str:
        from mlflow.exceptions import MlflowException

        from twinops.infra.tracking import ensure_experiment

        with fast_fail():
            experiment_id = ensure_experiment(STAGE, self.settings)
            mlflow_client = client(self.settings)
            try:
                run = mlflow_client.create_run(
                    experiment_id,
                    run_name=f"{state.name}-{state.started_at:%Y%m%d-%H%M%S}",
                    tags={
                        "isvc": state.name,
                        "namespace": state.namespace,
                        "mode": state.mode,
                        "model_uri": state.model_uri,
                        **({"registry_name": state.registry_name} if state.registry_name else {}),
                        **({"registry_version": state.registry_version} if state.registry_version else {}),
                    },
                )
                run_id = run.info.run_id
                params = {
                    "steps": ",".join(map(str, state.steps)),
                    "interval_seconds": state.interval_seconds,
                    "requested_uri": state.requested_uri,
                    **{f"threshold.{k}": v for k, v in state.thresholds.model_dump().items()},
                }
                for key, value in params.items():
                    mlflow_client.log_param(run_id, key, value)
            except MlflowException as error:
                raise _unavailable(error) from error
        return run_id

    def record(self, state: RolloutState, decision: Decision) -> None:
        if state.mlflow_run_id is None:
            return
        from mlflow.exceptions import MlflowException

        run_id, step = state.mlflow_run_id, len(state.decisions) - 1
        metrics = {
            "traffic_percent": decision.percent,
            "canary_score": decision.score,
            "baseline_score": state.baseline_score,
        }
        if decision.health is not None:
            metrics["error_rate"] = decision.health.error_rate
            metrics["p95_latency_s"] = decision.health.p95_latency_s
        with fast_fail():
            mlflow_client = client(self.settings)
            try:
                for key, value in metrics.items():
                    if value is not None:
                        mlflow_client.log_metric(run_id, key, float(value), step=step)
                mlflow_client.set_tag(run_id, f"decision.{step:02d}", decision.line()[:5000])
                if state.phase != "running":
                    mlflow_client.set_tag(run_id, "outcome", state.phase)
                    mlflow_client.log_dict(run_id, state.model_dump(mode="json"), "rollout.json")
                    mlflow_client.set_terminated(run_id, "FINISHED")
            except MlflowException as error:
                raise _unavailable(error) from error

    def release(self, state: RolloutState) -> None:
        """``champion`` to a promoted version, ``rejected`` on a rolled-back one; ``challenger`` goes."""
        if not (state.registry_name and state.registry_version):
            return
        from mlflow.exceptions import MlflowException

        name, version = state.registry_name, str(state.registry_version)
        last = state.last_decision
        why = f"rollout on {state.namespace}/{state.name}: {last.line() if last else state.phase}"
        with fast_fail():
            mlflow_client = client(self.settings)
            try:
                if state.phase == "promoted":
                    record_release(mlflow_client, name, version, path=ReleasePath.CANARY, why=why)
                elif state.phase == "rolled_back":
                    mlflow_client.set_model_version_tag(name, version, REJECTED_TAG, why[:5000])
                    spend_challenger(mlflow_client, name, version)
            except MlflowException as error:
                raise _unavailable(error) from error
