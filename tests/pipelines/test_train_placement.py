"""SFT/DPO steps with train_on=trainjob: the TrainJob they create, how they follow it, how it fails.

No Kubernetes API server (and no Kubeflow Trainer) runs here. These tests mock only the Kubernetes
API boundary: ``kubernetes.client.CustomObjectsApi`` and ``CoreV1Api``, the two API clients the
Kubeflow SDK's Kubernetes backend builds, are replaced by ``FakeCluster``, which answers as the API
server would (a ClusterTrainingRuntime, the TrainJob, its pods, node 0's log, events) and walks the
job through a script of states each time the step sleeps between polls. Everything above that
boundary is the real code: ``TrainerClient``, its backend, and twinops.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.rest import ApiException

from twinops.errors import ConfigError, JobFailed, ServiceUnavailable
from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.pipelines.images import ImageFamily, image
from twinops.pipelines.train_placement import placement_for, train_stage, trainer_client
from twinops.settings import Settings
from twinops.training.config import SFTJob
from twinops.training.runs import RESULT_FILE, TrainResult

NAMESPACE = "twinops"
GROUP = "trainer.kubeflow.org"


def runtime_cr(name: str, framework: str = "torch", kind: str = "ClusterTrainingRuntime") -> dict:
    """A Trainer runtime as the API server returns it (the shape of Trainer's torch-distributed)."""
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": framework}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "metadata": {
                                    "labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
                                },
                                "spec": {
                                    "template": {
                                        "spec": {
                                            "containers": [{"name": "node", "image": "pytorch/pytorch:2.7.1"}]
                                        }
                                    }
                                },
                            },
                        }
                    ]
                }
            },
        },
    }


class _Pending:
    """What an ``async_req=True`` call returns: the answer, or the API server's error, at ``.get()``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def get(self, timeout: float | None = None) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _reply(answer: Any, async_req: bool) -> Any:
    if async_req:
        return _Pending(answer)
    if isinstance(answer, Exception):
        raise answer
    return answer


class _LogStream:
    """The raw HTTP response ``read_namespaced_pod_log(follow=True, _preload_content=False)`` gives."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def stream(self, amt=None, decode_content=False):
        for line in self.lines:
            yield (line + "\n").encode()

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


def _typed(body: Any, kind: str) -> Any:
    """A kubernetes-client model from JSON, as the real client deserializes responses."""
    return kubernetes.client.ApiClient().deserialize(SimpleNamespace(data=json.dumps(body)), kind)


class FakeCluster:
    """The API server behind ``CustomObjectsApi`` and ``CoreV1Api`` (both built on it).

    ``script`` is the TrainJob's life, one state per poll: ``pending``, ``unschedulable``,
    ``running``, ``complete`` (which writes the run's ``train_result.json``, as the job's rank 0
    would) or ``failed``.
    """

    def __init__(self, home: Path, script: list[str], runtimes: list[dict] | None = None) -> None:
        self.home = home
        self.script = script
        self.state = 0
        self.runtimes = {r["metadata"]["name"]: r for r in runtimes or [runtime_cr("torch-distributed")]}
        self.trainjobs: dict[str, dict] = {}
        self.created: list[tuple[str, str, dict]] = []
        self.deleted: list[str] = []
        self.log = ["rank 0: loading bundled:tiny", "{'loss': 2.31}", "{'loss': 1.97}"]
        self.failure = {"reason": "FailedJobs", "message": "jobset failed: node-0 BackoffLimitExceeded"}

    # -- the job's life ---------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return self.script[min(self.state, len(self.script) - 1)]

    def tick(self, seconds: float) -> None:
        """The step sleeps between polls: the job moves on."""
        self.state += 1
        if self.phase == "complete":
            for name in self.trainjobs:
                run = self.home / "runs" / "sft" / name
                run.mkdir(parents=True, exist_ok=True)
                result = TrainResult(
                    stage="sft",
                    run_name=name,
                    run_dir=str(run),
                    model_dir=str(run / "merged"),
                    base_model="bundled:tiny",
                    dataset_version_ids=["instruction-abc123"],
                    metrics={"train_loss": 1.97},
                    steps=2,
                    mlflow_run_id="run-42",
                )
                (run / RESULT_FILE).write_text(result.model_dump_json())

    def _conditions(self) -> list[dict]:
        stamp = "2026-12-02T12:00:00Z"
        if self.phase == "complete":
            return [{"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "done",
                     "lastTransitionTime": stamp}]  # fmt: skip
        if self.phase == "failed":
            return [{"type": "Failed", "status": "True", "lastTransitionTime": stamp, **self.failure}]
        return []

    # -- CustomObjectsApi -------------------------------------------------------------------
    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_):
        assert (group, plural) == (GROUP, "trainjobs")
        self.created.append((namespace, plural, body))
        self.trainjobs[body["metadata"]["name"]] = body
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, async_req=False):
        if plural == "trainingruntimes":
            return _reply(ApiException(status=404, reason="Not Found"), async_req)
        if name not in self.trainjobs:
            return _reply(ApiException(status=404, reason="Not Found"), async_req)
        body = json.loads(json.dumps(self.trainjobs[name]))
        body["metadata"] |= {"namespace": namespace, "creationTimestamp": "2026-12-02T11:00:00Z"}
        body["status"] = {"conditions": self._conditions()}
        return _reply(body, async_req)

    def get_cluster_custom_object(self, group, version, plural, name, async_req=False):
        found = self.runtimes.get(name)
        return _reply(found or ApiException(status=404, reason="Not Found"), async_req)

    def list_cluster_custom_object(self, group, version, plural, async_req=False):
        return _reply({"items": list(self.runtimes.values())}, async_req)

    def list_namespaced_custom_object(self, group, version, namespace, plural, async_req=False):
        return _reply({"items": []}, async_req)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.deleted.append(name)

    # -- CoreV1Api --------------------------------------------------------------------------
    def read_namespaced_config_map(self, name, namespace):
        raise ApiException(status=404, reason="Not Found")

    def list_namespaced_pod(self, namespace, label_selector=None, async_req=False):
        phase = {"complete": "Succeeded", "failed": "Failed", "running": "Running"}.get(self.phase, "Pending")
        pods = [
            {
                "metadata": {
                    "name": f"{name}-node-0-{index}-abcde",
                    "creationTimestamp": "2026-12-02T11:00:01Z",
                    "labels": {
                        "jobset.sigs.k8s.io/replicatedjob-name": "node",
                        "batch.kubernetes.io/job-completion-index": str(index),
                    },
                },
                "spec": {"containers": [{"name": "node", "image": image(ImageFamily.TRAIN)}]},
                "status": {"phase": phase},
            }
            for name, body in self.trainjobs.items()
            for index in range(body["spec"]["trainer"]["numNodes"])
        ]
        return _reply(_typed({"items": pods}, "V1PodList"), async_req)

    def read_namespaced_pod_log(self, name, namespace, container=None, follow=False, **_):
        assert container == "node"
        return _LogStream(self.log) if follow else "\n".join(self.log)

    read_namespaced_pod_log.__doc__ = kubernetes.client.CoreV1Api.read_namespaced_pod_log.__doc__

    def list_namespaced_event(self, namespace, async_req=False):
        events = []
        if self.phase == "unschedulable":
            events = [
                {
                    "metadata": {"name": f"{name}-node-0-0-abcde.1"},
                    "involvedObject": {"kind": "Pod", "name": f"{name}-node-0-0-abcde"},
                    "reason": "FailedScheduling",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3",
                    "firstTimestamp": "2026-12-02T11:00:02Z",
                }
                for name in self.trainjobs
            ]
        return _reply(_typed({"items": events}, "CoreV1EventList"), async_req)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def cluster_client(monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> Any:
    """The SDK's TrainerClient, its API clients answered by ``cluster``."""
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda api_client=None: cluster)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda api_client=None: cluster)
    return trainer_client(NAMESPACE, kubernetes.client.Configuration())


def _job() -> SFTJob:
    return SFTJob(dataset="instruction-abc123", progress=False)


def _never_in_pod(job, settings):
    raise AssertionError("train_on=trainjob must not train in the step's pod")


def _train(settings, client, cluster: FakeCluster, lines: list[str], **trainjob) -> TrainResult:
    """The component's call, its polling paced by the fake cluster instead of the clock."""
    return train_stage(
        _job(),
        settings,
        train_on="trainjob",
        trainjob=trainjob,
        in_pod=_never_in_pod,
        client=client,
        log=lines.append,
        sleep=cluster.tick,
        clock=lambda: 0.0,
    )


def test_a_trainjob_step_creates_the_job_follows_it_and_hands_on_its_run(monkeypatch, settings) -> None:
    """Mocked Kubernetes API (see the module docstring): the body sent, field by field; the states
    followed (pending, running, complete); node 0's log in the step's log; the run handed on."""
    cluster = FakeCluster(settings.home, ["pending", "pending", "running", "running", "complete"])
    client = cluster_client(monkeypatch, cluster)
    lines: list[str] = []
    result = _train(settings, client, cluster, lines, num_nodes=2, gpus_per_node=4)

    [(namespace, plural, body)] = cluster.created
    name = body["metadata"]["name"]
    assert (namespace, plural) == (NAMESPACE, "trainjobs")
    assert name.startswith("twin-sft-") and len(name) <= 40
    assert body["apiVersion"] == f"{GROUP}/v1alpha1" and body["kind"] == "TrainJob"
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    config = settings.home / "trainjobs" / f"{name}.yaml"
    assert trainer["command"] == [
        "python", "-m", "torch.distributed.run", "-m", "twinops.cli", "train", "sft",
        "--config", str(config), "--json",
    ]  # fmt: skip
    assert trainer["image"] == image(ImageFamily.TRAIN)
    assert trainer["numNodes"] == 2
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    [patch] = spec["runtimePatches"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "twinops-home", "persistentVolumeClaim": {"claimName": "twinops-home"}}
    ]
    [container] = pod["containers"]
    assert container["volumeMounts"] == [
        {"name": "twinops-home", "mountPath": DEFAULT_PROFILE.home_mount_path}
    ]
    env = {variable["name"]: variable["valueFrom"] for variable in container["env"]}
    assert env["TWINOPS_TRAINJOB_RUNTIME"] == {
        "configMapKeyRef": {"name": "twinops-env", "key": "TWINOPS_TRAINJOB_RUNTIME"}
    }

    # The nodes train the step's own job, into a run folder named after the TrainJob.
    assert SFTJob.from_yaml(config) == _job().model_copy(update={"run_name": name})
    # Followed to the end: node 0's log copied once, the run read from the shared volume.
    assert cluster.state >= 4
    assert lines[1:] == cluster.log
    assert "2 node(s) x 4 GPU(s)" in lines[0]
    assert result.run_name == name and result.mlflow_run_id == "run-42"
    assert Path(result.model_dir) == settings.home / "runs" / "sft" / name / "merged"
    assert cluster.deleted == [name], "a completed job is deleted (its log is in the step's)"


def test_the_pipeline_steps_train_in_the_pod_by_default_without_kubernetes(settings) -> None:
    done = TrainResult(
        stage="sft", run_name="r", run_dir="d", model_dir="m", base_model="b", dataset_version_ids=[]
    )
    result = train_stage(_job(), settings, train_on="pod", trainjob={}, in_pod=lambda job, s: done)
    assert result is done


def test_a_failed_trainjob_fails_the_step_with_the_jobs_reason_in_one_line(monkeypatch, settings) -> None:
    """Mocked Kubernetes API (see the module docstring): the job's Failed condition reaches the step."""
    cluster = FakeCluster(settings.home, ["pending", "running", "failed"])
    cluster.log.append("dataset instruction-abc123 not found: run `twinops datasets build` first")
    client = cluster_client(monkeypatch, cluster)
    with pytest.raises(JobFailed) as raised:
        _train(settings, client, cluster, [])
    message = str(raised.value)
    name = cluster.created[0][2]["metadata"]["name"]
    assert (
        f"TrainJob {NAMESPACE}/{name} failed: FailedJobs: jobset failed: node-0 BackoffLimitExceeded"
        in message
    )
    assert "dataset instruction-abc123 not found" in message, "node 0's last words"
    assert "\n" not in message
    assert cluster.deleted == [], "a failed job is kept to inspect"


def test_a_runtime_that_does_not_exist_names_the_ones_that_do(monkeypatch, settings) -> None:
    """Mocked Kubernetes API (see the module docstring): the runtimes are listed from the cluster."""
    cluster = FakeCluster(
        settings.home, ["pending"], runtimes=[runtime_cr("torch-distributed"), runtime_cr("mpi-distributed")]
    )
    client = cluster_client(monkeypatch, cluster)
    settings = settings.model_copy(update={"trainjob_runtime": "torch-distrbuted"})
    with pytest.raises(ConfigError) as raised:
        _train(settings, client, cluster, [])
    message = str(raised.value)
    assert "'torch-distrbuted' is not a Kubeflow Trainer runtime" in message
    assert "(mpi-distributed, torch-distributed)" in message and "TWINOPS_TRAINJOB_RUNTIME" in message
    assert "\n" not in message
    assert cluster.created == [] and not (settings.home / "trainjobs").exists()


def test_a_builtin_trainer_runtime_is_refused(monkeypatch, settings) -> None:
    """Mocked Kubernetes API (see the module docstring): torchtune runtimes take no command."""
    cluster = FakeCluster(settings.home, ["pending"], runtimes=[runtime_cr("torchtune-llama", "torchtune")])
    client = cluster_client(monkeypatch, cluster)
    with pytest.raises(ConfigError, match=r"'torchtune-llama' runs a built-in trainer \(torchtune\)"):
        _train(settings, client, cluster, [], runtime="torchtune-llama")
    assert cluster.created == []


def test_more_ranks_than_the_cluster_can_place_is_one_line(monkeypatch, settings) -> None:
    """Mocked Kubernetes API (see the module docstring): the scheduler's FailedScheduling event
    fails the step once TWINOPS_TRAINJOB_SCHEDULE_TIMEOUT has passed (0 here), and the job goes."""
    cluster = FakeCluster(settings.home, ["pending", "unschedulable"])
    client = cluster_client(monkeypatch, cluster)
    settings = settings.model_copy(update={"trainjob_schedule_timeout": 0.0})
    with pytest.raises(ConfigError) as raised:
        _train(settings, client, cluster, [], num_nodes=4, gpus_per_node=8)
    message = str(raised.value)
    assert "cannot be scheduled (0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in message
    assert "num_nodes x gpus_per_node" in message and "\n" not in message
    assert cluster.deleted == [cluster.created[0][2]["metadata"]["name"]], "its pods would wait forever"


@pytest.mark.parametrize(
    ("train_on", "trainjob", "named"),
    [
        ("gpu", {}, "train_on='gpu' is not a place to train"),
        ("pod", {"num_nodes": 2}, "train_on=pod trains in the step's pod"),
        ("trainjob", {"num_nodes": 0}, "trainjob `num_nodes` input should be greater than or equal to 1"),
        ("trainjob", {"nodes": 2}, "trainjob `nodes` extra inputs are not permitted"),
        ("trainjob", {"runtime": "Torch Distributed"}, "'Torch Distributed' is not a valid Kubernetes name"),
    ],
)
def test_bad_placement_parameters_are_one_line(settings, train_on: str, trainjob: dict, named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        placement_for(train_on, trainjob, settings)
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_without_a_kubernetes_api_the_step_says_so(monkeypatch, tmp_path: Path) -> None:
    """No kube-config and no ServiceAccount token here, as on any machine outside a cluster."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    with pytest.raises(ServiceUnavailable) as raised:
        trainer_client()
    assert "train_on=trainjob runs in a pipeline step on a cluster" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_cancelled_step_deletes_its_trainjob(monkeypatch, settings) -> None:
    """Mocked Kubernetes API (see the module docstring): KFP stops a cancelled step with SIGTERM,
    which ends the wait as SystemExit; the job is deleted instead of training for nobody."""
    import os
    import signal

    cluster = FakeCluster(settings.home, ["pending"])
    client = cluster_client(monkeypatch, cluster)

    def terminated(seconds: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit, match="stopped"):
        train_stage(
            _job(), settings, train_on="trainjob", trainjob={}, in_pod=_never_in_pod, client=client,
            log=lambda line: None, sleep=terminated, clock=lambda: 0.0,
        )  # fmt: skip
    assert cluster.deleted == [cluster.created[0][2]["metadata"]["name"]]
    assert signal.getsignal(signal.SIGTERM) == before, "the step's own handler is back"
