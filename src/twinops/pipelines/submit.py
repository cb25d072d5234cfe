"""``twinops pipeline submit``: upload a pipeline version to Kubeflow Pipelines and start it.

The pipeline is compiled on the fly for the cluster (with the ``--secret``/``--pvc`` names given),
uploaded as a new version of the pipeline of the same name, then run once or on a cron schedule
in an experiment. Everything a user can get wrong is checked first, each as one line: the host
(must answer), the parameters, the schedule, the Kubernetes object names, the namespace.

Where the steps run: a multi-user Kubeflow (its health endpoint says ``multi_user``) runs them in the
experiment's namespace, a profile namespace (``--namespace``, else ``TWINOPS_NAMESPACE``, else the
kubeconfig context's), as its ServiceAccount ``default-editor``; standalone Kubeflow Pipelines runs
them in its own namespace (``kubeflow``) as ``pipeline-runner``, and takes no namespace. Either way
the ConfigMap, the PVC and the Secret the pipeline names must exist in that namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.pipelines import params as pipeline_params
from twinops.pipelines.gpu import DEFAULT_PROFILE, ClusterProfile, check_k8s_name
from twinops.pipelines.registry import canonical_name, get_pipeline

_CRON_FIELD = re.compile(r"^[\d*/,\-?LW#A-Za-z]+$")


class KfpEndpoint(BaseModel):
    """A Kubeflow Pipelines API that answered, and whether it runs pipelines per namespace."""

    url: str
    multi_user: bool | None = None  # None: the health answer did not say (e.g. a login page)


class SubmitResult(BaseModel):
    pipeline: str
    host: str
    namespace: str | None = None  # None: standalone KFP, which runs steps in its own namespace
    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    schedule: str | None = None


def normalize_schedule(cron: str) -> str:
    """KFP schedules take six cron fields (seconds first); a five-field cron gets ``0`` seconds."""
    fields = cron.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(_CRON_FIELD.match(field) for field in fields):
        raise ConfigError(
            f"--schedule {cron!r} is not a cron expression: use 5 fields like '0 3 * * *' (daily 03:00)"
        )
    return " ".join(fields)


def check_host(host: str, timeout: float = 5.0) -> KfpEndpoint:
    """The host URL without a trailing slash, if a Kubeflow Pipelines API answers there."""
    import httpx

    host = host.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise ConfigError(f"--host {host!r} is not an http(s) URL: pass e.g. --host http://localhost:8080")
    try:
        response = httpx.get(f"{host}/apis/v2beta1/healthz", timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ServiceUnavailable(
            f"Kubeflow Pipelines at {host} does not answer ({reason}): check --host and that the "
            "ml-pipeline service is reachable (e.g. kubectl port-forward svc/ml-pipeline-ui 8080:80)"
        ) from error
    if response.status_code >= 500 or response.status_code == 404:
        raise ServiceUnavailable(
            f"{host} answered HTTP {response.status_code} on /apis/v2beta1/healthz: it is not a working "
            "Kubeflow Pipelines API; check --host"
        )
    try:
        multi_user = response.json().get("multi_user")
    except (ValueError, AttributeError):  # behind a login page, the answer is not the API's
        multi_user = None
    return KfpEndpoint(url=host, multi_user=multi_user if isinstance(multi_user, bool) else None)


def kubeconfig_namespace() -> str | None:
    """The namespace of the kubeconfig's current context, as kubectl would use it; None without one."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        # KUBECONFIG is read now: the client reads it once, at import.
        _, current = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
    except (ConfigException, OSError):
        return None
    return (current or {}).get("context", {}).get("namespace")


def run_namespace(explicit: str | None, configured: str | None, endpoint: KfpEndpoint) -> str | None:
    """The namespace the run goes to: ``--namespace``, else TWINOPS_NAMESPACE, else the kubeconfig's;
    None for a standalone KFP, which takes none (its runs stay in its own namespace)."""
    if explicit is not None:
        explicit = check_k8s_name(explicit, "namespace", "--namespace")
        if endpoint.multi_user is False:
            raise ConfigError(
                f"Kubeflow Pipelines at {endpoint.url} is standalone (single-user): it runs every "
                "pipeline in its own namespace and takes no --namespace; drop it, and put twinops-env, "
                "twinops-home and twinops-secrets in KFP's namespace"
            )
        return explicit
    if endpoint.multi_user is False:
        return None
    namespace = configured or kubeconfig_namespace()
    if namespace is None and endpoint.multi_user:
        raise ConfigError(
            f"Kubeflow Pipelines at {endpoint.url} is multi-user: pass --namespace (your profile "
            "namespace), or set TWINOPS_NAMESPACE or a namespace in your kubeconfig context"
        )
    return None if namespace is None else check_k8s_name(namespace, "namespace", "TWINOPS_NAMESPACE")


@contextlib.contextmanager
def _api_errors(host: str) -> Iterator[None]:
    """An API refusal (auth, permissions, a bad request) as one line instead of a client traceback."""
    try:
        yield
    except Exception as error:
        from kfp_server_api.exceptions import ApiException

        if not isinstance(error, ApiException):
            raise
        reason = " ".join(str(error.reason or "").split()) or "no reason given"
        raise ServiceUnavailable(
            f"Kubeflow Pipelines at {host} refused the request (HTTP {error.status}: {reason}): check "
            "--host, your credentials and --namespace"
        ) from error


def _profile(secret: str | None, pvc: str | None) -> ClusterProfile:
    updates: dict[str, Any] = {}
    if secret is not None:
        updates["secret_name"] = check_k8s_name(secret, "Secret", "--secret")
    if pvc is not None:
        updates["home_pvc"] = check_k8s_name(pvc, "PersistentVolumeClaim", "--pvc")
    return DEFAULT_PROFILE.model_copy(update=updates)


def submit(
    name: str,
    host: str,
    *,
    raw_params: dict[str, str] | None = None,
    experiment: str = "twinops",
    schedule: str | None = None,
    secret: str | None = None,
    pvc: str | None = None,
    namespace: str | None = None,
    configured_namespace: str | None = None,
    client_factory: Any = None,
) -> SubmitResult:
    """Upload ``name`` as a new pipeline version and create a run (or a recurring run) in an
    experiment of ``namespace`` (see the module's docstring for which namespace that is).
    ``configured_namespace`` is TWINOPS_NAMESPACE, the default before the kubeconfig's."""
    from kfp import compiler

    pipeline_name = canonical_name(name)
    profile = _profile(secret, pvc)
    pipeline = get_pipeline(pipeline_name, target="cluster", profile=profile)
    arguments = pipeline_params.coerce(pipeline, raw_params or {})
    cron = normalize_schedule(schedule) if schedule else None
    if not experiment.strip():
        raise ConfigError("--experiment is empty: pass an experiment name, e.g. --experiment twinops")
    endpoint = check_host(host)
    host = endpoint.url
    target_namespace = run_namespace(namespace, configured_namespace, endpoint)

    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    with _api_errors(host), tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(sys.stderr):
        package = Path(folder) / f"{pipeline_name}.yaml"
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(package))
        digest = hashlib.sha256(package.read_bytes()).hexdigest()[:10]
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        client = client_factory(host=host)
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name).pipeline_id
        version = client.upload_pipeline_version(
            str(package), pipeline_version_name=f"{pipeline_name}-{stamp}-{digest}", pipeline_id=pipeline_id
        )
        # Runs belong to their experiment's namespace; pipelines and versions stay shared.
        experiment_id = client.create_experiment(experiment, namespace=target_namespace).experiment_id
        job_name = f"{pipeline_name}-{stamp}"
        result = SubmitResult(
            pipeline=pipeline_name,
            host=host,
            namespace=target_namespace,
            pipeline_id=pipeline_id,
            version_id=version.pipeline_version_id,
            experiment_id=experiment_id,
            schedule=cron,
        )
        if cron:
            recurring = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=job_name,
                cron_expression=cron,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version.pipeline_version_id,
                no_catchup=True,
            )
            result.recurring_run_id = recurring.recurring_run_id
        else:
            run = client.run_pipeline(
                experiment_id=experiment_id,
                job_name=job_name,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version.pipeline_version_id,
            )
            result.run_id = run.run_id
    return result
