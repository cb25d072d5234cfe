"""Every error a user can fix is one line on stderr, exit code 2, no traceback (issue 15, item 4).

Usage errors included: typer raises them from its own copy of click, which `main` must still
recognise. The unreachable servers are real closed ports on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from tests.support.one_line import assert_one_line_exit_2

from twinops.cli import main
from twinops.errors import ConfigError, ServiceUnavailable
from twinops.settings import get_settings


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["registry", "lis"], "No such command"),
        (["etl", "--no-such-option"], "--no-such-option"),
        (["train", "merge"], "Missing"),
        (["no-such-command"], "No such command"),
    ],
    ids=["unknown-subcommand", "unknown-option", "missing-argument", "unknown-command"],
)
def test_usage_errors_are_one_line(home, capsys, args: list[str], needle: str) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert_one_line_exit_2(code, err, needle, "--help")


def test_usage_error_from_the_console_script(home: Path) -> None:
    """The installed entry point, in a fresh process: the exit code the shell sees."""
    result = subprocess.run(
        [sys.executable, "-m", "twinops.cli", "etl", "--no-such-option"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TWINOPS_HOME": str(home)},
    )
    assert_one_line_exit_2(result.returncode, result.stderr, "--no-such-option")


def test_bad_environment_value_names_the_variable(home, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWINOPS_MONGODB_PORT", "abc")
    get_settings.cache_clear()
    code = main(["services", "status"])
    assert_one_line_exit_2(code, capsys.readouterr().err, "TWINOPS_MONGODB_PORT", "'abc'")
    with pytest.raises(ConfigError, match="TWINOPS_MONGODB_PORT"):
        get_settings()


def test_help_still_works_with_a_bad_environment_value(home, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWINOPS_MONGODB_PORT", "abc")
    get_settings.cache_clear()
    assert main(["services", "--help"]) == 0


def test_home_under_a_file_is_one_line(tmp_path, home, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TWINOPS_HOME", str(blocker / "home"))
    get_settings.cache_clear()
    code = main(["services", "status"])
    assert_one_line_exit_2(code, capsys.readouterr().err, "TWINOPS_HOME", str(blocker / "home"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_home_is_one_line(tmp_path, home, monkeypatch, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("TWINOPS_HOME", str(locked))
    get_settings.cache_clear()
    code = main(["services", "status"])
    assert_one_line_exit_2(code, capsys.readouterr().err, "TWINOPS_HOME")


def test_unwritable_home_writes_nothing(tmp_path, home, monkeypatch) -> None:
    from twinops.infra.home import ensure_home

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TWINOPS_HOME", str(blocker / "home"))
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="TWINOPS_HOME"):
        ensure_home(get_settings())
    assert blocker.read_text() == "not a folder"


def test_unreachable_qdrant_server_is_one_line(home, monkeypatch) -> None:
    from twinops.infra.qdrant import open_qdrant

    monkeypatch.setenv("TWINOPS_QDRANT_URL", f"http://127.0.0.1:{_closed_port()}")
    get_settings.cache_clear()
    with pytest.raises(ServiceUnavailable) as caught, open_qdrant(get_settings()):
        pass
    message = str(caught.value)
    assert "TWINOPS_QDRANT_URL" in message and "\n" not in message


@pytest.mark.timeout(90)  # MLflow's default retries run past 120 s: a hang guard, not a timing claim
@pytest.mark.slow
def test_registry_list_against_unreachable_mlflow_fails(home, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    get_settings.cache_clear()
    code = main(["registry", "list"])
    captured = capsys.readouterr()
    assert_one_line_exit_2(code, captured.err, "TWINOPS_MLFLOW_TRACKING_URI")
    assert "no registered model versions" not in captured.out


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"healthz check passed")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering_server() -> Iterator[str]:
    """A real HTTP server answering /healthz as Qdrant does (no Qdrant server binary here)."""
    server = HTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_services_status_checks_an_external_qdrant(home, monkeypatch, capsys, answering_server) -> None:
    monkeypatch.setenv("TWINOPS_QDRANT_URL", f"http://127.0.0.1:{_closed_port()}")
    get_settings.cache_clear()
    assert main(["services", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["qdrant"]["running"] is False

    monkeypatch.setenv("TWINOPS_QDRANT_URL", answering_server)
    get_settings.cache_clear()
    assert main(["services", "status", "--json"]) == 0
    qdrant = json.loads(capsys.readouterr().out)["qdrant"]
    assert qdrant["running"] is True and qdrant["detail"] == "external"


def test_services_up_refuses_an_unreachable_qdrant(home, monkeypatch, capsys, embedded_mongodb) -> None:
    monkeypatch.setenv("TWINOPS_MONGODB_URI", embedded_mongodb)
    monkeypatch.setenv("TWINOPS_QDRANT_URL", f"http://127.0.0.1:{_closed_port()}")
    get_settings.cache_clear()
    code = main(["services", "up"])
    assert_one_line_exit_2(code, capsys.readouterr().err, "TWINOPS_QDRANT_URL")


def test_a_commands_exit_code_reaches_the_shell(home, tmp_path, capsys) -> None:
    """`typer.Exit(1)` from a command (a check that found something) is the exit code, not 0."""
    components = tmp_path / "components"
    assert main(["pipeline", "docs", "--check", "--components-dir", str(components)]) == 1  # none written
    assert main(["pipeline", "docs", "--components-dir", str(components)]) == 0
    assert main(["pipeline", "docs", "--check", "--components-dir", str(components)]) == 0
