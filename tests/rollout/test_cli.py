"""``twinops rollout`` bad input: one clear line, exit code 2, nothing patched.

The command talks to the validating Kubernetes API emulator (conftest.py: the dev render's
InferenceServices, answering as the rollout's ServiceAccount) through a kubeconfig that points at
it, exactly as it would to a cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.rollout.conftest import running_cluster, write_kubeconfig
from tests.support.one_line import one_line_error

from twinops.cli import main


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with running_cluster("dev", "kustomize") as cluster:
        path = write_kubeconfig(tmp_path / "kubeconfig", cluster.api.url)
        monkeypatch.setenv("KUBECONFIG", str(path))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield cluster


def _start(*extra: str, isvc: str = "twin-llm") -> list[str]:
    defaults = {
        "--model-uri": "models:/twin-llm/1",
        "--steps": "10,25,50,100",
        "--interval": "5m",
        "--health": "probe",
        "-n": "twinops-dev",
    }
    flags = dict(zip(extra[::2], extra[1::2], strict=True))
    args = {**defaults, **flags}
    return ["rollout", "start", "--isvc", isvc, "--golden", "none", *[x for kv in args.items() for x in kv]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--steps", "10,5,50"), "--steps 10,5,50 does not increase (10 then 5)"),
        (("--steps", "10,50,150"), "150 is not a traffic percent in 1..100"),
        (("--steps", "ten,twenty"), "is not a list of whole percents"),
        (("--steps", "25,25"), "does not increase (25 then 25)"),
        (("--interval", "5 minutes"), "--interval '5 minutes' is not a duration such as 90s, 10m"),
        (("--interval", "-5m"), "--interval '-5m' is not a duration"),
        (("--interval", "1m,5m"), "gives 2 durations for 4 steps"),
        (("--approve-at", "30"), "--approve-at 30 is not one of the steps 10,25,50,100"),
        (("--model-uri", "/no/such/model"), "'/no/such/model' is not a model a cluster can load"),
        (("--health", "auto"), "no Prometheus to judge the canary by: set TWINOPS_PROMETHEUS_URL"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_patches_nothing(
    kube, mlflow_settings, capsys, extra, message
) -> None:
    one_line_error(main, _start(*extra), capsys, message)
    assert kube.isvc_writes() == []


def test_missing_inference_service(kube, mlflow_settings, capsys) -> None:
    code = main(_start(isvc="no-such-isvc"))
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "InferenceService twinops-dev/no-such-isvc does not exist" in err
    assert kube.isvc_writes() == []


def test_a_model_uri_the_registry_does_not_have(kube, mlflow_settings, capsys) -> None:
    code = main(_start("--model-uri", "models:/twin-llm/99"))
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "registered model 'twin-llm' does not exist" in err and "--model-uri" in err
    assert kube.isvc_writes() == []


def test_status_without_a_rollout_is_one_line(kube, home, capsys) -> None:
    code = main(["rollout", "status", "--isvc", "twin-llm", "-n", "twinops-dev"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "no rollout was ever recorded on twinops-dev/twin-llm" in err


def test_promote_without_a_running_rollout_patches_nothing(kube, home, capsys) -> None:
    code = main(["rollout", "promote", "--isvc", "twin-llm", "-n", "twinops-dev"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "no rollout is running on twinops-dev/twin-llm" in err
    assert kube.isvc_writes() == []
