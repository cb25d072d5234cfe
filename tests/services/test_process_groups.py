"""A server killed by its PID leaves its workers behind: ``stop_pid`` stops the whole group, and
``services up`` never starts a second server on a store that something still holds."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from twinops.errors import ServiceUnavailable
from twinops.services import mlflow_server
from twinops.services.manager import ServiceManager
from twinops.services.process import group_members, holders_of, start_detached, stop_pid, wait_until
from twinops.settings import Settings

# A leader that starts a worker in its own process group and waits, as a server with workers does.
LEADER = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", *sys.argv[1:]])
    time.sleep(300)
    """
)


def _leader_and_worker(tmp_path: Path, cwd: Path | None = None) -> tuple[int, int]:
    leader = start_detached(
        [sys.executable, "-c", LEADER], cwd=cwd or tmp_path / "run", log_file=tmp_path / "run.log"
    )
    assert wait_until(lambda: len(group_members(leader)) == 2, timeout=60)
    [worker] = [pid for pid in group_members(leader) if pid != leader]
    return leader, worker


def _kill_leader(leader: int) -> None:
    os.kill(leader, signal.SIGKILL)
    os.waitpid(leader, 0)  # our child: reap it, as init would


def test_stopping_a_server_whose_leader_was_killed_stops_its_workers(tmp_path: Path) -> None:
    leader, worker = _leader_and_worker(tmp_path)
    _kill_leader(leader)
    assert group_members(leader) == [worker]  # the worker serves on, as MLflow's did

    stop_pid(leader)
    assert group_members(leader) == []


@pytest.mark.slow  # a real MLflow server, started twice
def test_up_stops_the_remains_of_the_recorded_mlflow_and_refuses_a_stranger_on_its_store(
    settings: Settings, tmp_path: Path
) -> None:
    store = mlflow_server.store(settings)
    folder = store.parent
    manager = ServiceManager(settings)
    manager.up()
    try:
        recorded = manager.status()["mlflow"]
        _kill_leader_of_a_server(recorded.pid)
        assert holders_of(folder), "MLflow's workers (uvicorn, huey) outlive its leader"

        manager.up()
        restarted = manager.status()["mlflow"]
        assert restarted.running and restarted.pid != recorded.pid
        assert group_members(recorded.pid) == []  # the old workers are gone
        assert set(holders_of(folder)) <= set(group_members(restarted.pid))  # one server on the store

        # A process up did not record still holds the store: up refuses rather than start beside it.
        manager.down()
        stranger, _ = _leader_and_worker(tmp_path, cwd=folder)
        try:
            with pytest.raises(ServiceUnavailable, match=rf"still held by PID .*{stranger}"):
                manager.up()
        finally:
            stop_pid(stranger)
    finally:
        manager.down()
    assert holders_of(folder) == []


def _kill_leader_of_a_server(pid: int | None) -> None:
    """SIGKILL only the leader (the recorded PID), as the issue's operator did."""
    assert pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pid not in group_members(pid), timeout=10)
