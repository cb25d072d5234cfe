"""``LocalServers`` (what ``twinops serve`` and ``make run`` start): each server process is told the
launcher's TWINOPS_HOME. The servers run in the home folder, so a home left to its relative default
would resolve one level down, and a server following ``models:/...@champion`` would find no services
(`twinops serve all` failed so when TWINOPS_HOME was not exported). Under ``supervise`` a server that
dies is started again on its port, with a doubling delay, and the others keep running."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from twinops.services.process import free_port, pid_alive, wait_until
from twinops.serving.local import LocalServers
from twinops.settings import Settings


def test_each_server_process_gets_the_launchers_home(
    tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWINOPS_HOME", raising=False)
    settings = Settings(home=tmp_path / "home")

    with LocalServers(settings) as servers:
        server = servers.start("embedder", port=free_port(), args=["--model_dir", str(minilm_dir)])
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")

    assert f"TWINOPS_HOME={settings.home}".encode() in environ


def _supervising(servers: LocalServers, **options) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=lambda: servers.supervise(stop.is_set, **options), daemon=True)
    thread.start()
    return stop, thread


@pytest.mark.slow  # two real embedder servers
def test_a_dead_server_is_restarted_on_its_port_and_the_others_stay_up(
    tmp_path: Path, minilm_dir: Path
) -> None:
    events: list[str] = []
    with LocalServers(Settings(home=tmp_path / "home"), on_event=events.append) as servers:
        args = ["--model_dir", str(minilm_dir)]
        victim = servers.start("embedder", port=free_port(), args=args)
        other = servers.start("embedder", port=free_port(), args=args, label="embedder-b")
        for server in (victim, other):
            servers.wait_ready(server)
        stop, thread = _supervising(servers, first_delay=0.5)
        try:
            os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer would
            assert wait_until(lambda: servers.servers["embedder"].pid != victim.pid, timeout=60)
            restarted = servers.servers["embedder"]
            servers.wait_ready(restarted)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert (restarted.http_port, restarted.restarts) == (victim.http_port, 1)
        assert servers.servers["embedder-b"].pid == other.pid and pid_alive(other.pid)
        assert any(e.startswith("embedder exited") and "restarting in 0.5 s" in e for e in events)


@pytest.mark.slow  # a server process started five times
def test_a_server_that_keeps_dying_is_restarted_with_a_doubling_delay(tmp_path: Path) -> None:
    events: list[str] = []
    with LocalServers(Settings(home=tmp_path / "home"), on_event=events.append) as servers:
        servers.start("embedder", port=free_port(), args=["--model_dir", str(tmp_path / "no-such-model")])
        stop, thread = _supervising(servers, first_delay=0.1, max_delay=0.4, interval=0.05)
        try:
            assert wait_until(lambda: servers.servers["embedder"].restarts >= 4, timeout=300)
        finally:
            stop.set()
            thread.join(timeout=30)
    delays = [e.split("restarting in ")[1].split(" s")[0] for e in events if "restarting in" in e]
    assert delays[:4] == ["0.1", "0.2", "0.4", "0.4"]
