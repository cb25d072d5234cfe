"""Where a pipeline's SFT or DPO step trains: in its own KFP pod, or as a Kubeflow Trainer TrainJob.

``train_on="pod"`` (the default) trains in the step's pod, on its one GPU. ``train_on="trainjob"``
makes the step a client of Kubeflow Trainer, with the Kubeflow SDK (``TrainerClient``, Kubernetes
backend) in the step's namespace:

1. the job (the same ``SFTJob``/``DPOJob`` the pod would train, already validated) is written to
   ``TWINOPS_HOME/trainjobs/<name>.yaml`` on the shared ``twinops-home`` volume, its run folder
   named after the TrainJob;
2. a TrainJob runs ``twinops train <stage> --config <that file> --json`` under torchrun on
   ``num_nodes`` x ``gpus_per_node`` ranks (``twinops.pipelines.trainjob``) over the runtime
   ``TWINOPS_TRAINJOB_RUNTIME`` (or the placement's ``runtime``), which must exist;
3. the step follows the job: node 0's log goes into the step's log, pods the scheduler cannot place
   fail the step after ``TWINOPS_TRAINJOB_SCHEDULE_TIMEOUT`` seconds with the scheduler's words, and
   a failed job fails the step with the job's own reason in one line (the job is kept to inspect);
4. a completed job's ``train_result.json`` is read from the volume and handed on as if the step had
   trained (the TrainJob is deleted; its log is in the step's).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from twinops.errors import ConfigError, JobFailed, ServiceUnavailable, first_problem
from twinops.pipelines.gpu import DEFAULT_PROFILE, ClusterProfile
from twinops.pipelines.trainjob import TrainJobPlacement, trainjob_request
from twinops.settings import Settings
from twinops.training.runs import RESULT_FILE, TrainResult, run_parent

TRAIN_IN_POD, TRAIN_AS_TRAINJOB = "pod", "trainjob"
TRAIN_ON = (TRAIN_IN_POD, TRAIN_AS_TRAINJOB)
TRAINJOBS_SUBDIR = "trainjobs"
# How often the step asks the API server for the job's state.
POLL_SECONDS = 10.0


def placement_for(train_on: str, trainjob: dict[str, Any], settings: Settings) -> TrainJobPlacement | None:
    """None to train in the pod; the TrainJob placement (runtime from the setting) otherwise."""
    if train_on not in TRAIN_ON:
        raise ConfigError(
            f"train_on={train_on!r} is not a place to train: pass train_on=pod (the step's pod) or "
            "train_on=trainjob (a Kubeflow Trainer TrainJob)"
        )
    if train_on == TRAIN_IN_POD:
        if trainjob:
            raise ConfigError(
                f"trainjob={dict(trainjob)} sizes a TrainJob, but train_on=pod trains in the step's pod: "
                "pass train_on=trainjob or leave trainjob empty"
            )
        return None
    from pydantic import ValidationError

    try:
        return TrainJobPlacement.model_validate({"runtime": settings.trainjob_runtime, **dict(trainjob)})
    except ValidationError as error:
        problem = first_problem(error)
        message = problem.message
        raise ConfigError(
            f"trainjob `{problem.where or '(placement)'}` {message[0].lower()}{message[1:]}: fix the "
            "pipeline parameter trainjob "
            "(fields num_nodes, gpus_per_node, runtime)"
        ) from None


def train_stage(
    job: Any,
    settings: Settings,
    *,
    train_on: str,
    trainjob: dict[str, Any],
    in_pod: Callable[[Any, Settings], TrainResult],
    client: Any = None,
    **follow: Any,
) -> TrainResult:
    """Train ``job`` where ``train_on`` says: ``in_pod(job, settings)`` or a TrainJob (``follow``:
    ``run_trainjob``'s log, sleep and clock)."""
    placement = placement_for(train_on, trainjob, settings)
    if placement is None:
        return in_pod(job, settings)
    return run_trainjob(job, placement, settings, client=client, **follow)


def trainer_client(namespace: str | None = None, configuration: Any = None) -> Any:
    """The SDK's ``TrainerClient`` on the Kubernetes backend: in-cluster (the step's ServiceAccount
    and namespace) or from a kube-config; ``configuration`` replaces both."""
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import TrainerClient

    try:
        return TrainerClient(KubernetesBackendConfig(namespace=namespace, client_configuration=configuration))
    except Exception as error:  # no kube-config, no ServiceAccount token: one line
        raise ServiceUnavailable(
            f"no Kubernetes API to create a TrainJob with ({_one_line(error)}): train_on=trainjob "
            "runs in a pipeline step on a cluster with Kubeflow Trainer; use train_on=pod elsewhere"
        ) from None


def run_trainjob(
    job: Any,
    placement: TrainJobPlacement,
    settings: Settings,
    *,
    client: Any = None,
    profile: ClusterProfile = DEFAULT_PROFILE,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Create the TrainJob for ``job``, follow it to its end, and return the run it trained."""
    name = f"twin-{job.stage}-{uuid.uuid4().hex[:8]}"
    job = job.model_copy(update={"run_name": name, "progress": False})
    client = client or trainer_client()
    namespace = client.backend.namespace
    runtime = resolve_runtime(client, placement.runtime)
    config = write_job(job, settings, name)
    trainer, options = trainjob_request(
        job.stage, ["--config", str(config), "--json"], placement, name=name, profile=profile
    )
    try:
        client.train(runtime=runtime, trainer=trainer, options=options)
    except (RuntimeError, TimeoutError) as error:
        raise ServiceUnavailable(
            f"TrainJob {namespace}/{name} could not be created ({_api_reason(error)}): the pipeline's "
            "ServiceAccount needs the twinops-trainjobs Role (kustomize/base/rbac.yaml)"
        ) from None
    log(
        f"TrainJob {namespace}/{name}: {job.stage} on {placement.num_nodes} node(s) x "
        f"{placement.gpus_per_node} GPU(s), runtime {runtime.name}"
    )
    try:
        with _cancel_on_sigterm():
            follow_trainjob(client, name, settings, log=log, sleep=sleep, clock=clock)
    except JobFailed:
        raise  # the failed job and its pods stay for `kubectl describe` / `kubectl logs`
    except BaseException:
        _delete(client, name, log)  # the step gave up (unschedulable, cancelled): free the GPUs
        raise
    _delete(client, name, log)
    return read_result(job, settings, name)


@contextlib.contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
    """A run cancelled in KFP stops the step's pod with SIGTERM: end as an exception, so the
    TrainJob is deleted rather than left training for nobody."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancelled(signum: int, frame: Any) -> None:
        raise SystemExit(f"the step was stopped (signal {signum}) while following its TrainJob")

    previous = signal.signal(signal.SIGTERM, cancelled)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resolve_runtime(client: Any, runtime_name: str) -> Any:
    """The runtime as the cluster has it, or one line naming the runtimes that exist."""
    from kubeflow.trainer.types.types import TrainerType

    try:
        runtime = client.get_runtime(runtime_name)
    except (RuntimeError, TimeoutError) as error:
        reason = _api_reason(error)
        if getattr(error.__cause__, "status", None) == 403:
            raise ServiceUnavailable(
                f"the pipeline's ServiceAccount may not read Trainer runtimes ({reason}): apply the "
                "twinops-training-runtimes ClusterRole and the twinops-trainjobs Role "
                "(kustomize/base/rbac.yaml)"
            ) from None
        try:
            names = sorted(runtime.name for runtime in client.list_runtimes())
        except (RuntimeError, TimeoutError) as listing:
            raise ConfigError(
                f"Trainer runtime {runtime_name!r} was not found ({reason}) and the runtimes could not "
                f"be listed ({_api_reason(listing)}): set TWINOPS_TRAINJOB_RUNTIME or trainjob.runtime",
                setting="TWINOPS_TRAINJOB_RUNTIME",
            ) from None
        known = ", ".join(names) if names else "none: install Kubeflow Trainer's runtimes"
        raise ConfigError(
            f"{runtime_name!r} is not a Kubeflow Trainer runtime in namespace {client.backend.namespace} "
            f"or the cluster: set TWINOPS_TRAINJOB_RUNTIME or trainjob.runtime to one that exists ({known})",
            setting="TWINOPS_TRAINJOB_RUNTIME",
        ) from None
    if runtime.trainer.trainer_type != TrainerType.CUSTOM_TRAINER:
        raise ConfigError(
            f"Trainer runtime {runtime_name!r} runs a built-in trainer ({runtime.trainer.framework}), not "
            "a command: set TWINOPS_TRAINJOB_RUNTIME or trainjob.runtime to a torch runtime such as "
            "torch-distributed",
            setting="TWINOPS_TRAINJOB_RUNTIME",
        )
    return runtime


def write_job(job: Any, settings: Settings, name: str) -> Path:
    """The job as the TrainJob's nodes read it (``--config``), on the shared volume."""
    path = settings.home / TRAINJOBS_SUBDIR / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"stage": job.stage, **job.model_dump(mode="json")}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def follow_trainjob(
    client: Any,
    name: str,
    settings: Settings,
    *,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait for the TrainJob to complete, copying node 0's log; its failure as one line."""
    from kubeflow.trainer.constants import constants

    streamed = False
    last_line = ""
    unplaced_since: float | None = None
    while True:
        status = client.get_job(name).status
        if status == constants.TRAINJOB_COMPLETE:
            return
        if status == constants.TRAINJOB_FAILED:
            raise JobFailed(failure_line(client, name, last_line))
        if status == constants.TRAINJOB_RUNNING and not streamed:
            streamed = True
            last_line = _copy_logs(client, name, log) or last_line
            continue
        unplaced = unschedulable(client, name) if status == constants.TRAINJOB_CREATED else None
        if unplaced is None:
            unplaced_since = None
        else:
            unplaced_since = clock() if unplaced_since is None else unplaced_since
            if clock() - unplaced_since >= settings.trainjob_schedule_timeout:
                raise ConfigError(
                    f"TrainJob {client.backend.namespace}/{name} cannot be scheduled ({unplaced}): "
                    "ask for fewer ranks (trainjob num_nodes x gpus_per_node) or add GPU nodes",
                    setting="TWINOPS_TRAINJOB_SCHEDULE_TIMEOUT",
                )
        sleep(POLL_SECONDS)


def unschedulable(client: Any, name: str) -> str | None:
    """The scheduler's message for a pod of the job it cannot place now, else None."""
    try:
        events = client.get_job_events(name)
    except (RuntimeError, TimeoutError):
        return None
    latest: dict[str, Any] = {}
    for event in events:  # sorted by first occurrence
        if event.involved_object_kind == "Pod" and event.reason in {"FailedScheduling", "Scheduled"}:
            latest[event.involved_object_name] = event
    for event in latest.values():
        if event.reason == "FailedScheduling":
            return _one_line(event.message)
    return None


def failure_line(client: Any, name: str, last_line: str = "") -> str:
    """The failed job's own reason (its Failed condition), with node 0's last words."""
    from kubeflow.trainer.constants import constants

    namespace = client.backend.namespace
    try:
        body = client.backend.custom_api.get_namespaced_custom_object(
            constants.GROUP, constants.VERSION, namespace, constants.TRAINJOB_PLURAL, name
        )
        conditions = (body.get("status") or {}).get("conditions") or []
    except Exception as error:  # the reason is best effort; the failure is not
        conditions = [{"type": "Failed", "status": "True", "message": f"reason unreadable: {error}"}]
    failed = [
        c for c in conditions if c.get("type") == constants.TRAINJOB_FAILED and c.get("status") == "True"
    ]
    reason = (
        ": ".join(part for part in (failed[-1].get("reason"), failed[-1].get("message")) if part)
        if failed
        else ""
    )
    line = f"TrainJob {namespace}/{name} failed: {_one_line(reason) or 'no reason given'}"
    if last_line:
        line += f"; node 0 last logged: {_one_line(last_line)}"
    return line + f" (kept: kubectl describe trainjob -n {namespace} {name})"


def read_result(job: Any, settings: Settings, name: str) -> TrainResult:
    """The run a completed TrainJob left on the shared volume."""
    path = run_parent(job, settings) / name / RESULT_FILE
    if not path.is_file():
        raise JobFailed(
            f"TrainJob {name} completed but left no {path}: the job's nodes must mount the "
            "twinops-home volume at TWINOPS_HOME, as the pipeline steps do"
        )
    return TrainResult.model_validate_json(path.read_text())


def _copy_logs(client: Any, name: str, log: Callable[[str], None]) -> str:
    """Node 0's log into the step's log, until the node ends; its last non-empty line."""
    last = ""
    try:
        for line in client.get_job_logs(name, follow=True):
            text = line.rstrip()
            log(text)
            last = text.strip() or last
    except (RuntimeError, TimeoutError) as error:
        log(f"(the log of TrainJob {name} stopped: {_api_reason(error)})")
    return last


def _delete(client: Any, name: str, log: Callable[[str], None]) -> None:
    try:
        client.delete_job(name)
    except (RuntimeError, TimeoutError) as error:
        log(f"(TrainJob {name} was not deleted: {_api_reason(error)})")


def _api_reason(error: BaseException) -> str:
    """The SDK wraps the API server's answer; its status and reason are the useful part."""
    cause = error.__cause__
    status = getattr(cause, "status", None)
    if status is not None:
        return _one_line(f"{_one_line(str(error))}: {status} {getattr(cause, 'reason', '')}")
    return _one_line(f"{error}: {cause}" if cause else str(error))


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())
