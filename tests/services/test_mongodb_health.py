"""``services status`` tells a panicked embedded MongoDB from a healthy one and names a full disk;
``services up`` restarts a panicked one. A panicked WiredTiger still answers ping and fails every
other command, which is how the issue's full disk looked "running" until `down` and `up`.

The panic is written into the server's log as WiredTiger writes it (filling a real disk needs a
mount this test cannot make); the server, its status and its restart are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.infra.service_state import ServicesState
from twinops.services import mongodb
from twinops.services.manager import ServiceManager
from twinops.services.process import pid_alive, stop_pid
from twinops.settings import Settings

pytestmark = pytest.mark.slow  # a wire server per test

WT_PANIC_LINE = (
    "[WT_VERB_DEFAULT][ERROR]: __posix_file_write, 412: /data/journal/WiredTigerLog.0000000003: "
    "handle-write: pwrite: failed to write 4096 bytes at offset 8192: No space left on device\n"
    "[WT_VERB_DEFAULT][ERROR]: __wt_panic, 490: the process must exit and restart: WT_PANIC: "
    "WiredTiger library panic\n"
)


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceManager:
    for key in ("TWINOPS_MONGODB_URI", "TWINOPS_QDRANT_URL"):
        monkeypatch.delenv(key, raising=False)
    # MLflow on a sqlite file: nothing to start, so `up` is about MongoDB only.
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return ServiceManager(settings)


def test_a_panicked_server_is_not_running_names_the_full_disk_and_up_restarts_it(manager) -> None:
    record = mongodb.start(manager.settings)
    ServicesState(services={"mongodb": record}).save(manager.settings.services_state_file)
    try:
        healthy = manager.status()["mongodb"]
        assert healthy.running and healthy.detail == record.detail

        with Path(record.log_file).open("a") as log:
            log.write(WT_PANIC_LINE)
        assert mongodb.ping(record.uri)  # it still answers ping: what made it look running
        panicked = manager.status()["mongodb"]
        assert not panicked.running
        assert panicked.detail.startswith("panicked") and "is full" in panicked.detail
        assert "twinops services up" in panicked.detail

        restarted = manager.up()["mongodb"]
        assert restarted.pid != record.pid and not pid_alive(record.pid)
        again = manager.status()["mongodb"]
        assert again.running and again.detail == record.detail  # a new log: the old panic is history
    finally:
        stop_pid(record.pid)
        manager.down()


def test_a_dead_server_says_so(manager) -> None:
    record = mongodb.start(manager.settings)
    ServicesState(services={"mongodb": record}).save(manager.settings.services_state_file)
    stop_pid(record.pid)
    status = manager.status()["mongodb"]
    assert not status.running and status.detail.startswith("exited")
