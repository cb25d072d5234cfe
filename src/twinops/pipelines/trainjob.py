"""DAPT, SFT and DPO as Kubeflow Trainer TrainJobs: the body a pipeline step sends, built without a cluster.

A TrainJob runs ``twinops train <stage>`` under torchrun on ``num_nodes`` pods of the train image with
``gpus_per_node`` GPUs each, over a Trainer runtime (``torch-distributed`` by default: it sets the
``PET_*`` variables torchrun reads for node count, rank and rendezvous). The training code is the one
the KFP pod runs (``twinops.training.distributed``: rank 0 saves and logs, the others wait). Each
node mounts the ``twinops-home`` PVC and takes the TWINOPS_* settings and credentials the way every
pipeline step does (``twinops.pipelines.gpu.ClusterProfile``), so the run folder lands where the
next step looks for it.

The body is made by the Kubeflow SDK (``kubeflow.trainer``, ``TrainerClient``'s Kubernetes backend):
``render_trainjob`` drives the backend's own ``train`` with a recorder in place of the API server,
so it is exactly what ``TrainerClient.train`` would POST, and it validates against the
``kubeflow-trainer-api`` models. No Trainer CRD is obtainable offline, so that is the check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinops.errors import ConfigError
from twinops.pipelines.gpu import DEFAULT_PROFILE, ClusterProfile, check_k8s_name
from twinops.pipelines.images import ImageFamily, image
from twinops.settings import Settings
from twinops.training.distributed import TORCHRUN_MODULE

# TWINOPS_TRAINJOB_RUNTIME's default (the pipelines read the setting; a placement may name another).
DEFAULT_RUNTIME: str = Settings.model_fields["trainjob_runtime"].default
# The replicated job and container of the torch runtimes that run the trainer.
TRAINER_NODE = "node"
HOME_VOLUME = "twinops-home"

Stage = Literal["dapt", "sft", "dpo"]


class TrainJobPlacement(BaseModel):
    """Where a training step runs as a TrainJob: the Trainer runtime and the size of the job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: str = Field(DEFAULT_RUNTIME, description="Trainer runtime running torchrun jobs.")
    num_nodes: int = Field(1, ge=1, description="Pods (nodes) of the job.")
    gpus_per_node: int = Field(1, ge=1, description="GPUs per pod = ranks per pod.")

    @field_validator("runtime")
    @classmethod
    def _runtime_name(cls, value: str) -> str:
        return check_k8s_name(value, "Trainer runtime", "the TrainJob placement's `runtime`")


def trainjob_command(stage: Stage, twinops_args: list[str]) -> list[str]:
    """``python -m torch.distributed.run -m twinops.cli train <stage> <args>``: torchrun takes node
    count, ranks per node and rendezvous from the runtime's ``PET_*`` environment."""
    return ["python", "-m", TORCHRUN_MODULE, "-m", "twinops.cli", "train", stage, *twinops_args]


def trainjob_request(
    stage: Stage,
    twinops_args: list[str],
    placement: TrainJobPlacement,
    *,
    name: str | None = None,
    profile: ClusterProfile = DEFAULT_PROFILE,
) -> tuple[Any, list[Any]]:
    """(``CustomTrainerContainer``, options) for ``TrainerClient.train``."""
    from kubeflow.trainer.options import common as common_options
    from kubeflow.trainer.options import kubernetes as k8s_options
    from kubeflow.trainer.types.types import CustomTrainerContainer

    trainer = CustomTrainerContainer(
        image=image(ImageFamily.TRAIN),
        num_nodes=placement.num_nodes,
        resources_per_node={
            "gpu": str(placement.gpus_per_node),
            "cpu": profile.gpu_cpu_limit,
            "memory": profile.gpu_memory_limit,
        },
    )
    node = k8s_options.ContainerPatch(
        name=TRAINER_NODE,
        env=_settings_env(profile),
        volume_mounts=[{"name": HOME_VOLUME, "mountPath": profile.home_mount_path}],
    )
    pod = k8s_options.PodSpecPatch(
        volumes=[{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": profile.home_pvc}}],
        containers=[node],
        node_selector=dict(profile.gpu_node_selector),
        tolerations=[toleration.model_dump(exclude_none=True) for toleration in profile.gpu_tolerations],
    )
    patch = k8s_options.RuntimePatch(
        training_runtime_spec=k8s_options.TrainingRuntimeSpecPatch(
            template=k8s_options.JobSetTemplatePatch(
                spec=k8s_options.JobSetSpecPatch(
                    replicated_jobs=[
                        k8s_options.ReplicatedJobPatch(
                            name=TRAINER_NODE,
                            template=k8s_options.JobTemplatePatch(
                                spec=k8s_options.JobSpecPatch(template=k8s_options.PodTemplatePatch(spec=pod))
                            ),
                        )
                    ]
                )
            )
        )
    )
    options: list[Any] = [k8s_options.TrainerCommand(command=trainjob_command(stage, twinops_args)), patch]
    if name:
        options.append(common_options.Name(name=check_k8s_name(name, "TrainJob", "the TrainJob name")))
    return trainer, options


def runtime_reference(placement: TrainJobPlacement) -> Any:
    """The SDK's view of the runtime, as ``TrainerClient.get_runtime`` returns it from the cluster."""
    from kubeflow.trainer.types.types import Runtime, RuntimeKind, RuntimeTrainer, TrainerType

    trainer = RuntimeTrainer(
        trainer_type=TrainerType.CUSTOM_TRAINER, framework="torch", image=image(ImageFamily.TRAIN)
    )
    return Runtime(name=placement.runtime, trainer=trainer, kind=RuntimeKind.CLUSTER_TRAINING_RUNTIME)


def render_trainjob(
    stage: Stage,
    twinops_args: list[str],
    placement: TrainJobPlacement,
    *,
    name: str,
    namespace: str = "kubeflow",
    profile: ClusterProfile = DEFAULT_PROFILE,
) -> dict[str, Any]:
    """The TrainJob body ``TrainerClient.train`` would send, validated by the Trainer API models."""
    from kubeflow.trainer.backends.kubernetes.backend import KubernetesBackend
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    trainer, options = trainjob_request(stage, twinops_args, placement, name=name, profile=profile)
    # The backend without its constructor (which loads a kube-config and asks the cluster for its
    # version): the SDK's own TrainJob assembly, with a recorder where the API server would be.
    backend = object.__new__(KubernetesBackend)
    backend.namespace = namespace
    backend.custom_api = _Recorder()
    backend.train(runtime=runtime_reference(placement), trainer=trainer, options=options)
    body = backend.custom_api.body
    try:
        TrainerV1alpha1TrainJob.from_dict(body)
    except ValueError as error:
        message = " ".join(str(error).split())
        raise ConfigError(
            f"TrainJob {name} is not a valid trainer.kubeflow.org/v1alpha1 TrainJob: {message}"
        ) from None
    return body


def _settings_env(profile: ClusterProfile) -> list[dict[str, Any]]:
    """TWINOPS_* from the ConfigMap and credentials from the Secret, as every pipeline step gets them."""
    env: list[dict[str, Any]] = [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": profile.config_map, "key": key}}}
        for key in profile.config_env
    ]
    env += [
        {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": profile.secret_name, "key": key, "optional": True}},
        }
        for key, variable in profile.secret_env.items()
    ]
    return env


class _Recorder:
    """Stands where ``CustomObjectsApi`` would: keeps the body instead of sending it."""

    body: dict[str, Any]

    def create_namespaced_custom_object(self, group, version, namespace, plural, body) -> None:
        self.body = body
