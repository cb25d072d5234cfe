"""The embedded MongoDB: SecantusDB, a MongoDB-wire server on WiredTiger, as its own process.

Why SecantusDB: it speaks the wire protocol closely enough for pymongo's unique indexes,
transactions, aggregation and change streams (it advertises a single-node replica set). It is
GPL-2.0, so twinops never imports it: it lives in its own environment (``.venv-mongo``) and runs
as a separate process in ``TWINOPS_HOME/services/mongodb``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from twinops.errors import ServiceUnavailable
from twinops.infra.service_state import ServiceRecord
from twinops.services.process import free_port, port_in_use, start_detached, tail, wait_until
from twinops.settings import Settings

SERVER_EXECUTABLE = "secantusd-py"
# Below this much free space on the store's disk WiredTiger cannot write its journal: name it.
MIN_FREE_BYTES = 64 * 1024 * 1024
# What WiredTiger writes when it gives up (a panic: every later command fails until a restart) and
# when the disk is full.
PANIC_MARKER = "WT_PANIC"
DISK_FULL_MARKER = "No space left on device"


def ping(uri: str, timeout_ms: int = 2000) -> bool:
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


@dataclass(frozen=True)
class Trouble:
    """Why a live embedded server cannot (or soon cannot) serve."""

    panicked: bool  # it answers ping and fails every other command until it is restarted
    reason: str


def trouble(record: ServiceRecord) -> Trouble | None:
    """What is wrong with a live embedded server, or None: WiredTiger panicked (its log says so since
    this start), or the disk holding its store is full."""
    log_tail = ""
    if record.log_file and Path(record.log_file).exists():
        with Path(record.log_file).open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - 256 * 1024))
            log_tail = log.read().decode("utf-8", "replace")
    free = shutil.disk_usage(record.workdir).free if record.workdir else None
    disk_full = DISK_FULL_MARKER in log_tail or (free is not None and free < MIN_FREE_BYTES)
    disk = f"the disk holding {record.workdir} is full ({(free or 0) // 2**20} MB free)" if disk_full else ""
    if PANIC_MARKER in log_tail:
        return Trouble(
            panicked=True,
            reason=(
                f"panicked: WiredTiger gave up{f' ({disk})' if disk else ''} and every command fails; "
                + ("free space, then " if disk else "")
                + "run `twinops services up` to restart it (it recovers from its journal)"
            ),
        )
    return Trouble(panicked=False, reason=f"{disk}: free space before it panics") if disk else None


def find_server_binary(settings: Settings) -> str:
    """The wire-server executable: the setting, then ``.venv-mongo`` beside the project, then PATH."""
    candidates = [settings.mongodb_server_bin] if settings.mongodb_server_bin else []
    project_root = Path(__file__).resolve().parents[3]
    candidates += [
        str(project_root / ".venv-mongo" / "bin" / SERVER_EXECUTABLE),
        str(Path(sys.prefix).parent / ".venv-mongo" / "bin" / SERVER_EXECUTABLE),
        shutil.which(SERVER_EXECUTABLE) or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServiceUnavailable(
        "no MongoDB wire server found: run `make .venv-mongo` to install SecantusDB, "
        "point TWINOPS_MONGODB_SERVER_BIN at one, or set TWINOPS_MONGODB_URI to an external MongoDB",
        setting="TWINOPS_MONGODB_URI",
    )


def store(settings: Settings) -> Path:
    """The WiredTiger data folder of the embedded server: one server at a time."""
    return settings.services_dir / "mongodb" / "data"


def start(settings: Settings) -> ServiceRecord:
    binary = find_server_binary(settings)
    port = settings.mongodb_port or free_port()
    if port_in_use(port):
        raise ServiceUnavailable(
            f"port {port} for the embedded MongoDB is in use: set TWINOPS_MONGODB_PORT to a free "
            "port or unset it to pick one",
            setting="TWINOPS_MONGODB_PORT",
        )
    workdir = settings.services_dir / "mongodb"
    log_file = workdir / "server.log"
    if log_file.exists():  # a new log per start: a panic of the last run is not this one's
        log_file.replace(workdir / "server.log.1")
    command = [
        binary,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--storage-path", str(store(settings)),
        "--log-level", "WARNING",
    ]  # fmt: skip
    pid = start_detached(command, cwd=workdir, log_file=log_file)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    if not wait_until(lambda: ping(uri, 500), timeout=settings.service_start_timeout):
        raise ServiceUnavailable(
            f"embedded MongoDB did not answer on port {port}: {tail(log_file)}",
            setting="TWINOPS_MONGODB_URI",
        )
    return ServiceRecord(
        name="mongodb", uri=uri, running=True, managed=True, pid=pid, port=port,
        workdir=str(workdir), log_file=str(log_file), detail="SecantusDB (embedded)",
    )  # fmt: skip
