"""`twinops pipeline`: bad input is one line with exit code 2; submit drives the kfp Client.

There is no Kubeflow Pipelines API server here: the unreachable-host case uses a real closed port
on 127.0.0.1, the health check a real HTTP server, and the happy path records the calls on a
stand-in for ``kfp.Client`` that binds each call to the real client's signature (nothing real can
answer the KFP API on this machine; ``tests.support.kfp_client``).
"""

import json
import socket
from pathlib import Path

import pytest
from tests.support.kfp_client import RecordingClient
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.errors import ConfigError
from twinops.pipelines.submit import KfpEndpoint, check_host, normalize_schedule, submit

pytestmark = pytest.mark.slow  # each test compiles the KFP pipelines (seconds each)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unknown_pipeline(home, capsys) -> None:
    err = one_line_error(main, ["pipeline", "run-local", "no_such_pipeline"], capsys)
    assert "no_such_pipeline" in err and "twin_pipeline" in err


def test_unknown_parameter(home, capsys) -> None:
    err = one_line_error(main, ["pipeline", "run-local", "feature", "--param", "colour=blue"], capsys)
    assert "colour" in err and "author" in err


def test_parameter_of_the_wrong_type(home, capsys) -> None:
    err = one_line_error(main, ["pipeline", "run-local", "training", "-p", "sft_max_steps=many"], capsys)
    assert "sft_max_steps" in err and "integer" in err


def test_parameter_without_equals(home, capsys) -> None:
    assert "key=value" in one_line_error(main, ["pipeline", "run-local", "twin", "-p", "author"], capsys)


def test_unreachable_host(home, capsys) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    err = one_line_error(main, ["pipeline", "submit", "twin_pipeline", "--host", host], capsys)
    assert host in err and "does not answer" in err


@pytest.mark.parametrize("secret", ["", "Not_A_Name"])
def test_missing_or_bad_secret_name(home, capsys, secret: str) -> None:
    err = one_line_error(
        main, ["pipeline", "submit", "twin", "--host", "http://127.0.0.1:1", "--secret", secret], capsys
    )
    assert "--secret" in err


def test_bad_schedule(home, capsys) -> None:
    err = one_line_error(
        main,
        ["pipeline", "submit", "twin", "--host", "http://127.0.0.1:1", "--schedule", "every day"],
        capsys,
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


@pytest.fixture
def kfp_host(kfp_api) -> str:
    return kfp_api(multi_user=False)


def test_submit_uploads_a_version_and_runs(home, kfp_host) -> None:
    result = submit(
        "twin",
        kfp_host,
        raw_params={"sft_max_steps": "3"},
        experiment="nightly",
        client_factory=RecordingClient,
    )
    assert (result.pipeline_id, result.version_id, result.run_id) == ("p-1", "v-1", "r-1")
    names = [call[0] for call in RecordingClient.calls]
    assert names == [
        "__init__",
        "get_pipeline_id",
        "upload_pipeline",
        "upload_pipeline_version",
        "create_experiment",
        "run_pipeline",
    ]
    run = RecordingClient.call("run_pipeline")
    assert run["params"] == {"sft_max_steps": 3} and run["version_id"] == "v-1"
    uploaded = Path(RecordingClient.call("upload_pipeline")["pipeline_package_path"])
    assert uploaded.name == "twin_pipeline.yaml"
    # Standalone KFP takes no namespace: its runs stay in its own.
    assert RecordingClient.call("create_experiment") == {"name": "nightly", "namespace": None}
    assert result.namespace is None


def test_submit_with_schedule_creates_a_recurring_run(home, kfp_host) -> None:
    result = submit(
        "training", kfp_host, schedule="0 3 * * *", secret="my-secrets", client_factory=RecordingClient
    )
    assert result.recurring_run_id == "rr-1" and result.schedule == "0 0 3 * * *"
    assert RecordingClient.call("create_recurring_run")["cron_expression"] == "0 0 3 * * *"


def test_the_stand_in_refuses_what_kfp_refuses() -> None:
    """The signature check bites: an argument kfp.Client's method does not take fails."""
    with pytest.raises(TypeError):
        RecordingClient().create_experiment("nightly", profile="team-a")


def test_multi_user_runs_go_to_the_namespace_given(home, kfp_api) -> None:
    result = submit("feature", kfp_api(multi_user=True), namespace="team-a", client_factory=RecordingClient)
    assert RecordingClient.call("create_experiment")["namespace"] == "team-a"
    assert result.namespace == "team-a"
    # The client's own namespace is KFP's installation (kubeflow), not the user's: left alone.
    assert "namespace" not in RecordingClient.call("__init__")


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
    assert submit("feature", host, client_factory=RecordingClient).namespace == "from-kubeconfig"
    configured = submit("feature", host, configured_namespace="from-env", client_factory=RecordingClient)
    assert configured.namespace == "from-env"
    given = submit(
        "feature", host, namespace="given", configured_namespace="from-env", client_factory=RecordingClient
    )
    assert given.namespace == "given"


def test_multi_user_without_a_namespace_is_one_line(home, kfp_api, tmp_path: Path, monkeypatch) -> None:
    host = kfp_api(multi_user=True)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", None)))
    with pytest.raises(ConfigError, match="multi-user: pass --namespace"):
        submit("feature", host, client_factory=RecordingClient)
    assert not RecordingClient.calls, "nothing is uploaded"


def test_a_namespace_for_standalone_kfp_is_refused(home, kfp_host) -> None:
    with pytest.raises(ConfigError, match=r"standalone .* takes no --namespace"):
        submit("feature", kfp_host, namespace="team-a", client_factory=RecordingClient)


def test_the_cli_passes_twinops_namespace(home, kfp_api, monkeypatch, capsys) -> None:
    host = kfp_api(multi_user=True)
    monkeypatch.setattr("kfp.Client", RecordingClient)
    monkeypatch.setenv("TWINOPS_NAMESPACE", "team-b")
    from twinops.settings import get_settings

    get_settings.cache_clear()
    assert main(["pipeline", "submit", "feature", "--host", host]) == 0
    assert RecordingClient.call("create_experiment")["namespace"] == "team-b"
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

    class _Refusing(RecordingClient):
        def create_experiment(self, *args, **kwargs):
            raise ApiException(status=403, reason="Forbidden\n")

    with pytest.raises(ServiceUnavailable, match=r"refused the request \(HTTP 403: Forbidden\)") as raised:
        submit("feature", kfp_host, client_factory=_Refusing)
    assert "\n" not in str(raised.value)
