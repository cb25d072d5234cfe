"""`twinops pipeline`: bad input is one line with exit code 2; submit drives the kfp Client.

There is no Kubeflow Pipelines API server here: the unreachable-host case uses a real closed port
on 127.0.0.1, and the happy path records the calls on a stand-in for ``kfp.Client`` (a mock,
because nothing real can answer the KFP API on this machine).
"""

import json
import socket
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest

from twinops.cli import main
from twinops.errors import ConfigError
from twinops.pipelines.submit import normalize_schedule, submit


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_unknown_pipeline(home, capsys) -> None:
    err = _one_line_error(capsys, ["pipeline", "run-local", "no_such_pipeline"])
    assert "no_such_pipeline" in err and "twin_pipeline" in err


def test_unknown_parameter(home, capsys) -> None:
    err = _one_line_error(capsys, ["pipeline", "run-local", "feature", "--param", "colour=blue"])
    assert "colour" in err and "author" in err


def test_parameter_of_the_wrong_type(home, capsys) -> None:
    err = _one_line_error(capsys, ["pipeline", "run-local", "training", "-p", "sft_max_steps=many"])
    assert "sft_max_steps" in err and "integer" in err


def test_parameter_without_equals(home, capsys) -> None:
    assert "key=value" in _one_line_error(capsys, ["pipeline", "run-local", "twin", "-p", "author"])


def test_unreachable_host(home, capsys) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    err = _one_line_error(capsys, ["pipeline", "submit", "twin_pipeline", "--host", host])
    assert host in err and "does not answer" in err


@pytest.mark.parametrize("secret", ["", "Not_A_Name"])
def test_missing_or_bad_secret_name(home, capsys, secret: str) -> None:
    err = _one_line_error(
        capsys, ["pipeline", "submit", "twin", "--host", "http://127.0.0.1:1", "--secret", secret]
    )
    assert "--secret" in err


def test_bad_schedule(home, capsys) -> None:
    err = _one_line_error(
        capsys, ["pipeline", "submit", "twin", "--host", "http://127.0.0.1:1", "--schedule", "every day"]
    )
    assert "--schedule" in err


def test_schedule_gets_seconds() -> None:
    assert normalize_schedule("0 3 * * *") == "0 0 3 * * *"
    assert normalize_schedule("30 0 3 * * 1") == "30 0 3 * * 1"
    with pytest.raises(ConfigError):
        normalize_schedule("* *")


def test_compile_and_list(home, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TWINOPS_IMAGE_TAG", raising=False)
    assert main(["pipeline", "compile", "--output-dir", str(tmp_path), "--name", "feature", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["compiled"] == [str(tmp_path / "feature_pipeline.yaml")]
    assert main(["pipeline", "list", "--json"]) == 0
    catalog = json.loads(capsys.readouterr().out)
    assert catalog["twin_pipeline"]["sft_max_steps"]["type"] == "Integer"


class _RecordingClient:
    """Stands in for kfp.Client: records calls, answers with ids (no KFP API server here)."""

    calls: typing.ClassVar[list[tuple]] = []

    def __init__(self, host: str) -> None:
        self.calls.append(("init", host))

    def get_pipeline_id(self, name):
        self.calls.append(("get_pipeline_id", name))
        return

    def upload_pipeline(self, path, pipeline_name):
        self.calls.append(("upload_pipeline", pipeline_name, Path(path).read_text()[:19]))
        return SimpleNamespace(pipeline_id="p-1")

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id):
        self.calls.append(("upload_pipeline_version", pipeline_id))
        return SimpleNamespace(pipeline_version_id="v-1")

    def create_experiment(self, name):
        self.calls.append(("create_experiment", name))
        return SimpleNamespace(experiment_id="e-1")

    def run_pipeline(self, **kwargs):
        self.calls.append(("run_pipeline", kwargs))
        return SimpleNamespace(run_id="r-1")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("create_recurring_run", kwargs))
        return SimpleNamespace(recurring_run_id="rr-1")


@pytest.fixture
def kfp_host(monkeypatch):
    """The host check passes (a KFP API would answer); the client is the recording stand-in."""
    monkeypatch.setattr("twinops.pipelines.submit.check_host", lambda host: host.rstrip("/"))
    _RecordingClient.calls = []
    return "http://kfp.example:8080/"


def test_submit_uploads_a_version_and_runs(home, kfp_host) -> None:
    result = submit(
        "twin",
        kfp_host,
        raw_params={"sft_max_steps": "3"},
        experiment="nightly",
        client_factory=_RecordingClient,
    )
    assert (result.pipeline_id, result.version_id, result.run_id) == ("p-1", "v-1", "r-1")
    names = [call[0] for call in _RecordingClient.calls]
    assert names == [
        "init",
        "get_pipeline_id",
        "upload_pipeline",
        "upload_pipeline_version",
        "create_experiment",
        "run_pipeline",
    ]
    run = _RecordingClient.calls[-1][1]
    assert run["params"] == {"sft_max_steps": 3} and run["version_id"] == "v-1"
    assert _RecordingClient.calls[2][2] == "# PIPELINE DEFINITI"


def test_submit_with_schedule_creates_a_recurring_run(home, kfp_host) -> None:
    result = submit(
        "training", kfp_host, schedule="0 3 * * *", secret="my-secrets", client_factory=_RecordingClient
    )
    assert result.recurring_run_id == "rr-1" and result.schedule == "0 0 3 * * *"
    assert _RecordingClient.calls[-1][1]["cron_expression"] == "0 0 3 * * *"


def test_an_api_refusal_is_one_line(home, kfp_host) -> None:
    from kfp_server_api.exceptions import ApiException

    from twinops.errors import ServiceUnavailable

    class _Refusing(_RecordingClient):
        def create_experiment(self, name):
            raise ApiException(status=403, reason="Forbidden\n")

    with pytest.raises(ServiceUnavailable, match=r"refused the request \(HTTP 403: Forbidden\)") as raised:
        submit("feature", kfp_host, client_factory=_Refusing)
    assert "\n" not in str(raised.value)
