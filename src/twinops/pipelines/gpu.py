"""Where a task runs on the cluster: GPU or CPU, the shared volume, env, secrets, retries, caching.

Every step mounts the ``twinops-home`` PVC at TWINOPS_HOME (datasets, features, model cache and
training runs live there, as they do under TWINOPS_HOME locally), takes its TWINOPS_* settings
from the ``twinops-env`` ConfigMap and its credentials from a Kubernetes Secret (by reference,
never by value). GPU steps additionally ask for an accelerator and land on the GPU node pool
through a node selector and a toleration; CPU steps ask for no GPU at all. A step that only
follows a Kubeflow TrainJob (``train_on=trainjob``: the job's own pods hold the GPUs) is a CPU step
with small requests in the ``data`` image.

The local runner (``kfp.local``) ignores all of this: it is Kubernetes platform config only.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinops.errors import ConfigError
from twinops.pipelines.images import ImageFamily, image

# Kubernetes object names (PVC, ConfigMap, Secret): DNS-1123 subdomain.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

HOME_MOUNT_PATH = "/var/lib/twinops"


def check_k8s_name(value: str, what: str, flag: str) -> str:
    """A Kubernetes object name or one clear line saying what to pass instead."""
    if not value or not value.strip():
        raise ConfigError(f"{what} name is missing: pass {flag} NAME (an existing Kubernetes {what})")
    if len(value) > 253 or not _K8S_NAME.match(value):
        raise ConfigError(
            f"{what} name {value!r} is not a valid Kubernetes name (lowercase letters, digits, '-', "
            f"'.'): fix {flag}"
        )
    return value


class Toleration(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str = "NoSchedule"


class ClusterProfile(BaseModel):
    """How pipeline steps are placed on the cluster; the defaults match ``kustomize/``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home_pvc: str = Field("twinops-home", description="PVC holding TWINOPS_HOME (model cache, data).")
    home_mount_path: str = HOME_MOUNT_PATH
    config_map: str = Field("twinops-env", description="ConfigMap with the TWINOPS_* settings.")
    config_env: tuple[str, ...] = (
        "TWINOPS_HOME",
        "TWINOPS_MONGODB_DATABASE",
        "TWINOPS_QDRANT_URL",
        "TWINOPS_MLFLOW_TRACKING_URI",
        "TWINOPS_FEAST_REPO",
        "TWINOPS_FEAST_ONLINE_STORE",
        "TWINOPS_EMBEDDING_MODEL",
        "TWINOPS_TRAINJOB_RUNTIME",
        "HF_HUB_OFFLINE",
    )
    secret_name: str = Field("twinops-secrets", description="Secret with credentials, mapped to env.")
    # Secret data key -> env var; keys marked optional so a cluster without them still schedules.
    secret_env: dict[str, str] = Field(
        default_factory=lambda: {
            "mongodb-uri": "TWINOPS_MONGODB_URI",
            "qdrant-api-key": "TWINOPS_QDRANT_API_KEY",
            # The URL carries Redis's password, so it is a credential, not a ConfigMap setting.
            "redis-url": "TWINOPS_REDIS_URL",
            # The pipeline writes the registry: MLflow's basic-auth account of the writers.
            "mlflow-admin-username": "MLFLOW_TRACKING_USERNAME",
            "mlflow-admin-password": "MLFLOW_TRACKING_PASSWORD",
            "hf-token": "HF_TOKEN",
        }
    )
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_limit: int = Field(1, ge=1)
    gpu_node_selector: dict[str, str] = Field(default_factory=lambda: {"twinops.io/node-pool": "gpu"})
    gpu_tolerations: tuple[Toleration, ...] = (Toleration(key="nvidia.com/gpu"),)
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_limit: str = "4G"
    gpu_cpu_limit: str = "8"
    gpu_memory_limit: str = "32G"
    # A TrainJob follower creates the job, copies node 0's log and reads the result: about 0.5 GB
    # resident after importing twinops.training.
    follower_cpu_request: str = "250m"
    follower_cpu_limit: str = "1"
    follower_memory_request: str = "1G"
    follower_memory_limit: str = "2G"
    retries: int = Field(2, ge=0, description="Retries per step (backoff doubles from 30 s).")

    @field_validator("home_pvc", "config_map", "secret_name")
    @classmethod
    def _k8s_names(cls, value: str) -> str:
        return check_k8s_name(value, "Kubernetes object", "the cluster profile")


DEFAULT_PROFILE = ClusterProfile()


def _common(task: Any, profile: ClusterProfile, *, cache: bool) -> Any:
    from kfp import kubernetes

    kubernetes.mount_pvc(task, pvc_name=profile.home_pvc, mount_path=profile.home_mount_path)
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=profile.config_map,
        config_map_key_to_env={key: key for key in profile.config_env},
    )
    kubernetes.use_secret_as_env(
        task, secret_name=profile.secret_name, secret_key_to_env=profile.secret_env, optional=True
    )
    if profile.retries:
        task.set_retry(num_retries=profile.retries, backoff_duration="30s", backoff_factor=2.0)
    task.set_caching_options(enable_caching=cache)
    return task


def cpu_step(task: Any, profile: ClusterProfile = DEFAULT_PROFILE, *, cache: bool = False) -> Any:
    """A CPU step: bounded CPU/memory, no accelerator, any node."""
    task.set_cpu_request(profile.cpu_request).set_cpu_limit(profile.cpu_limit)
    task.set_memory_limit(profile.memory_limit)
    return _common(task, profile, cache=cache)


def follower_step(task: Any, profile: ClusterProfile = DEFAULT_PROFILE, *, cache: bool = True) -> Any:
    """A step that follows a TrainJob: the CPU-only ``data`` image (the same twinops and lock as the
    ``train`` image, without CUDA), small requests, no accelerator, any node."""
    task.set_container_image(image(ImageFamily.DATA))
    task.set_cpu_request(profile.follower_cpu_request).set_cpu_limit(profile.follower_cpu_limit)
    task.set_memory_request(profile.follower_memory_request).set_memory_limit(profile.follower_memory_limit)
    return _common(task, profile, cache=cache)


def gpu_step(task: Any, profile: ClusterProfile = DEFAULT_PROFILE, *, cache: bool = True) -> Any:
    """A GPU step: one accelerator, scheduled on the GPU node pool (selector + tolerations)."""
    from kfp import kubernetes

    task.set_accelerator_type(profile.accelerator_type).set_accelerator_limit(profile.accelerator_limit)
    task.set_cpu_limit(profile.gpu_cpu_limit).set_memory_limit(profile.gpu_memory_limit)
    for label, value in profile.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    for toleration in profile.gpu_tolerations:
        kubernetes.add_toleration(
            task,
            key=toleration.key,
            operator=toleration.operator,
            value=toleration.value,
            effect=toleration.effect,
        )
    return _common(task, profile, cache=cache)
