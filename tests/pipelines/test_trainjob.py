"""The TrainJob a training step sends, built by the Kubeflow SDK without a cluster, field by field.

No Trainer CRD or API server is obtainable offline: the body is validated with the
``kubeflow-trainer-api`` models, which are generated from the CRD's OpenAPI schema.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from twinops.errors import ConfigError
from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.pipelines.images import ImageFamily, image
from twinops.pipelines.trainjob import TrainJobPlacement, render_trainjob

TRAINING_DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
ARGS = ["--dataset", "instruction-abc123", "--max-steps", "200", "--json"]


def _render(**placement) -> dict:
    return render_trainjob(
        "sft", ARGS, TrainJobPlacement(**placement), name="sft-abc123", namespace="twinops"
    )


def test_the_trainjob_body_field_by_field() -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    body = _render(num_nodes=2, gpus_per_node=4)
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["name"] == "sft-abc123"
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}

    trainer = spec["trainer"]
    assert trainer["image"] == image(ImageFamily.TRAIN)
    # torchrun takes nodes, ranks per node and rendezvous from the runtime's PET_* variables.
    assert trainer["command"] == [
        "python",
        "-m",
        "torch.distributed.run",
        "-m",
        "twinops.cli",
        "train",
        "sft",
        *ARGS,
    ]
    assert trainer["numNodes"] == 2
    resources = trainer["resourcesPerNode"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "4"
    assert resources["limits"]["memory"] == DEFAULT_PROFILE.gpu_memory_limit

    [patch] = spec["runtimePatches"]
    [node_job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node_job["name"] == "node"
    pod = node_job["template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "twinops-home", "persistentVolumeClaim": {"claimName": "twinops-home"}}
    ]
    [container] = pod["containers"]
    assert container["name"] == "node"
    assert container["volumeMounts"] == [
        {"name": "twinops-home", "mountPath": DEFAULT_PROFILE.home_mount_path}
    ]
    env = {variable["name"]: variable["valueFrom"] for variable in container["env"]}
    assert env["TWINOPS_HOME"] == {"configMapKeyRef": {"name": "twinops-env", "key": "TWINOPS_HOME"}}
    assert env["TWINOPS_MONGODB_URI"] == {
        "secretKeyRef": {"name": "twinops-secrets", "key": "mongodb-uri", "optional": True}
    }
    assert set(env) == set(DEFAULT_PROFILE.config_env) | set(DEFAULT_PROFILE.secret_env.values())
    assert pod["nodeSelector"] == {"twinops.io/node-pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    # The Trainer API models (from the CRD schema) read it back unchanged.
    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() == body


def test_a_runtime_name_that_cannot_be_a_trainer_runtime_is_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        TrainJobPlacement(runtime="Torch Distributed")
    message = str(raised.value)
    assert "Torch Distributed" in message and "runtime" in message and "\n" not in message


def test_the_training_doc_shows_the_rendered_two_node_example() -> None:
    """docs/training.md's example (2 nodes x 1 GPU, the train image) is what the code renders today."""
    block = re.search(r"<!-- trainjob-example -->\n```yaml\n(.*?)```", TRAINING_DOC.read_text(), re.DOTALL)
    assert block, "docs/training.md lost its TrainJob example"
    rendered = render_trainjob(
        "sft",
        ["--dataset", "latest", "--max-steps", "200", "--json"],
        TrainJobPlacement(num_nodes=2, gpus_per_node=1),
        name="twin-sft",
        namespace="twinops",
    )
    assert yaml.safe_load(block[1]) == rendered
