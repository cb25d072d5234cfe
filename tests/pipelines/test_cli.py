"""`twinops pipeline`: bad input is one line with exit code 2; submit drives the kfp Client.

There is no Kubeflow Pipelines API server here: the unreachable-host case uses a real closed port
on 127.0.0.1, the health check a real HTTP server, and the happy path records the calls on a
stand-in for ``kfp.Client`` that binds each call to the real client's signature (nothing real can
answer the KFP API on this machine).
"""

import inspect
import json
import socket
import typing
from pathlib import Path
from types import SimpleNamespace

import kfp
import pytest

from twinops.cli import main
from twinops.errors import ConfigError
from twinops.pipelines.submit import KfpEndpoint, check_host, normalize_schedule, submit

pytestmark = pytest.mark.slow  # each test compiles the KFP pipelines (seconds each)


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


# The real client, kept before any test replaces kfp.Client with the stand-in below.
_KFP_CLIENT = kfp.Client


def _uploaded(args: tuple, kwargs: dict) -> SimpleNamespace:
    package = Path(kwargs.get("pipeline_package_path", args[0] if args else ""))
    return SimpleNamespace(pipeline_id="p-1", head=package.read_text()[:19])


_ANSWERS = {
    "get_pipeline_id": None,
    "upload_pipeline": _uploaded,
    "upload_pipeline_version": SimpleNamespace(pipeline_version_id="v-1"),
    "create_experiment": SimpleNamespace(experiment_id="e-1"),
    "run_pipeline": SimpleNamespace(run_id="r-1"),
    "create_recurring_run": SimpleNamespace(recurring_run_id="rr-1"),
}


class _RecordingClient:
    """Stands in for kfp.Client (no KFP API server here): every call is bound to the signature of
    the real kfp 2.17 method of that name, so a misspelt or missing argument fails as it would
    against kfp, then recorded with its arguments by name, and answered with ids."""

    calls: typing.ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, *args, **kwargs) -> None:
        self._record("__init__", args, kwargs)

    def _record(self, method: str, args: tuple, kwargs: dict) -> None:
        bound = inspect.signature(getattr(_KFP_CLIENT, method)).bind(self, *args, **kwargs)
        self.calls.append((method, {k: v for k, v in bound.arguments.items() if k != "self"}))

    def __getattr__(self, method: str):
        if method not in _ANSWERS:
            raise AttributeError(method)

        def call(*args, **kwargs):
            self._record(method, args, kwargs)
            answer = _ANSWERS[method]
            return answer(args, kwargs) if callable(answer) else answer

        return call

    @classmethod
    def call(cls, method: str) -> dict:
        (arguments,) = [arguments for name, arguments in cls.calls if name == method]
        return arguments


@pytest.fixture
def kfp_api(monkeypatch):
    """A KFP API answers at the host (multi-user or standalone, as the test sets); the client is
    the recording stand-in; no kubeconfig unless the test writes one."""

    def answering(multi_user: bool | None = None) -> str:
        monkeypatch.setattr(
            "twinops.pipelines.submit.check_host",
            lambda host: KfpEndpoint(url=host.rstrip("/"), multi_user=multi_user),
        )
        return "http://kfp.example:8080/"

    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("TWINOPS_NAMESPACE", raising=False)
    _RecordingClient.calls = []
    return answering


@pytest.fixture
def kfp_host(kfp_api) -> str:
    return kfp_api(multi_user=False)


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
        "__init__",
        "get_pipeline_id",
        "upload_pipeline",
        "upload_pipeline_version",
        "create_experiment",
        "run_pipeline",
    ]
    run = _RecordingClient.call("run_pipeline")
    assert run["params"] == {"sft_max_steps": 3} and run["version_id"] == "v-1"
    uploaded = Path(_RecordingClient.call("upload_pipeline")["pipeline_package_path"])
    assert uploaded.name == "twin_pipeline.yaml"
    # Standalone KFP takes no namespace: its runs stay in its own.
    assert _RecordingClient.call("create_experiment") == {"name": "nightly", "namespace": None}
    assert result.namespace is None


def test_submit_with_schedule_creates_a_recurring_run(home, kfp_host) -> None:
    result = submit(
        "training", kfp_host, schedule="0 3 * * *", secret="my-secrets", client_factory=_RecordingClient
    )
    assert result.recurring_run_id == "rr-1" and result.schedule == "0 0 3 * * *"
    assert _RecordingClient.call("create_recurring_run")["cron_expression"] == "0 0 3 * * *"


def test_the_stand_in_refuses_what_kfp_refuses() -> None:
    """The signature check bites: an argument kfp.Client's method does not take fails."""
    with pytest.raises(TypeError):
        _RecordingClient().create_experiment("nightly", profile="team-a")


def test_multi_user_runs_go_to_the_namespace_given(home, kfp_api) -> None:
    result = submit("feature", kfp_api(multi_user=True), namespace="team-a", client_factory=_RecordingClient)
    assert _RecordingClient.call("create_experiment")["namespace"] == "team-a"
    assert result.namespace == "team-a"
    # The client's own namespace is KFP's installation (kubeflow), not the user's: left alone.
    assert "namespace" not in _RecordingClient.call("__init__")


def _kubeconfig(path: Path, namespace: str | None) -> Path:
    context = {"cluster": "c", "user": "u", **({"namespace": namespace} if namespace else {})}
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": context}],
                "current-context": "ctx",
            }
        )
    )
    return path


def test_the_namespace_defaults_to_twinops_namespace_then_the_kubeconfig(
    home, kfp_api, monkeypatch, tmp_path: Path
) -> None:
    host = kfp_api(multi_user=True)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", "from-kubeconfig")))
    assert submit("feature", host, client_factory=_RecordingClient).namespace == "from-kubeconfig"
    configured = submit("feature", host, configured_namespace="from-env", client_factory=_RecordingClient)
    assert configured.namespace == "from-env"
    given = submit(
        "feature", host, namespace="given", configured_namespace="from-env", client_factory=_RecordingClient
    )
    assert given.namespace == "given"


def test_multi_user_without_a_namespace_is_one_line(home, kfp_api, tmp_path: Path, monkeypatch) -> None:
    host = kfp_api(multi_user=True)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", None)))
    with pytest.raises(ConfigError, match="multi-user: pass --namespace"):
        submit("feature", host, client_factory=_RecordingClient)
    assert not _RecordingClient.calls, "nothing is uploaded"


def test_a_namespace_for_standalone_kfp_is_refused(home, kfp_host) -> None:
    with pytest.raises(ConfigError, match=r"standalone .* takes no --namespace"):
        submit("feature", kfp_host, namespace="team-a", client_factory=_RecordingClient)


def test_the_cli_passes_twinops_namespace(home, kfp_api, monkeypatch, capsys) -> None:
    host = kfp_api(multi_user=True)
    monkeypatch.setattr("kfp.Client", _RecordingClient)
    monkeypatch.setenv("TWINOPS_NAMESPACE", "team-b")
    from twinops.settings import get_settings

    get_settings.cache_clear()
    assert main(["pipeline", "submit", "feature", "--host", host]) == 0
    assert _RecordingClient.call("create_experiment")["namespace"] == "team-b"
    assert "in namespace team-b" in " ".join(capsys.readouterr().out.split())  # the console wraps


def test_check_host_reads_whether_kfp_is_multi_user(monkeypatch) -> None:
    """The health answer of a real HTTP server: multi_user as KFP reports it; a login page in front
    of the API (a multi-user Kubeflow without a session) says nothing."""
    import http.server
    import threading

    answers = {"/apis/v2beta1/healthz": b'{"multi_user": true, "pipeline_store": "db"}'}

    class _Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path, b"<html>sign in</html>")
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert check_host(host + "/") == KfpEndpoint(url=host, multi_user=True)
        answers["/apis/v2beta1/healthz"] = b'{"multi_user": false}'
        assert check_host(host).multi_user is False
        del answers["/apis/v2beta1/healthz"]
        assert check_host(host).multi_user is None
    finally:
        server.shutdown()


def test_an_api_refusal_is_one_line(home, kfp_host) -> None:
    from kfp_server_api.exceptions import ApiException

    from twinops.errors import ServiceUnavailable

    class _Refusing(_RecordingClient):
        def create_experiment(self, *args, **kwargs):
            raise ApiException(status=403, reason="Forbidden\n")

    with pytest.raises(ServiceUnavailable, match=r"refused the request \(HTTP 403: Forbidden\)") as raised:
        submit("feature", kfp_host, client_factory=_Refusing)
    assert "\n" not in str(raised.value)
