"""Bring the embedded services up and down, and tell every process where they are.

A ``TWINOPS_*`` URI set for a service means "use that one": it is checked, never started or
stopped. Otherwise ``up`` starts it under ``TWINOPS_HOME/services/<name>`` and records it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from twinops.errors import ServiceUnavailable
from twinops.infra.service_state import ServiceRecord, ServicesState
from twinops.services import mlflow_server, mongodb, qdrant_server
from twinops.services.process import holders_of, pid_alive, stop_pid
from twinops.settings import Settings

SERVICE_NAMES = ("mongodb", "qdrant", "mlflow")


def _external_record(name: str, uri: str, reachable: bool) -> ServiceRecord:
    return ServiceRecord(name=name, uri=uri, running=reachable, managed=False, detail="external")


def _qdrant_record(settings: Settings) -> ServiceRecord:
    if settings.qdrant_url:
        reachable = qdrant_server.healthy(settings.qdrant_url, settings.qdrant_api_key)
        return _external_record("qdrant", settings.qdrant_url, reachable)
    path = settings.qdrant_local_path
    return ServiceRecord(
        name="qdrant",
        uri=str(path),
        running=True,
        managed=False,
        workdir=str(path),
        detail="local mode (opened in-process; one process at a time)",
    )


def _alive(record: ServiceRecord | None, check: Callable[[str], bool]) -> bool:
    return bool(record and record.managed and pid_alive(record.pid) and check(record.uri))


def _mongodb_serving(record: ServiceRecord | None) -> bool:
    """Alive, answering, and not panicked (a panicked server answers ping, then fails everything)."""
    if record is None or not _alive(record, mongodb.ping):
        return False
    problem = mongodb.trouble(record)
    return problem is None or not problem.panicked


def _clear_remains(name: str, record: ServiceRecord | None, store: Path) -> None:
    """Before a managed service starts again: stop what is left of its recorded process group (a
    leader killed by PID leaves its workers serving), and refuse to start beside any other process
    still working in its folder, since two servers on one sqlite file or WiredTiger folder corrupt
    the store."""
    if record is not None and record.managed and record.pid:
        stop_pid(record.pid)
    holders = holders_of(store.parent)
    if holders:
        pids = ", ".join(str(pid) for pid in holders)
        raise ServiceUnavailable(
            f"the embedded {name}'s store {store} is still held by PID {pids} (working in its folder), "
            "which `services up` did not record: stop it, or leave the folder, and run `twinops "
            "services up` again; a second server on the same store would corrupt it"
        )


def _mongodb_status(record: ServiceRecord) -> ServiceRecord:
    if not _alive(record, mongodb.ping):
        gone = "exited" if not pid_alive(record.pid) else "not answering"
        return record.model_copy(update={"running": False, "detail": f"{gone}: run `twinops services up`"})
    problem = mongodb.trouble(record)
    if problem is None:
        return record.model_copy(update={"running": True})
    return record.model_copy(update={"running": not problem.panicked, "detail": problem.reason})


class ServiceManager:
    """Starts, stops and reports the embedded services for one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def _state_file(self) -> Path:
        return self.settings.services_state_file

    def _load(self) -> ServicesState:
        return ServicesState.load(self._state_file)

    def up(self) -> dict[str, ServiceRecord]:
        """Start what is not running; harmless to call twice."""
        state = self._load()
        settings = self.settings
        if settings.mongodb_uri:
            if not mongodb.ping(settings.mongodb_uri, 5000):
                raise ServiceUnavailable(
                    "MongoDB at TWINOPS_MONGODB_URI is unreachable: fix the URI or unset it to use "
                    "the embedded server",
                    setting="TWINOPS_MONGODB_URI",
                )
            state.services["mongodb"] = _external_record("mongodb", settings.mongodb_uri, True)
        elif not _mongodb_serving(state.services.get("mongodb")):
            _clear_remains("mongodb", state.services.get("mongodb"), mongodb.store(settings))
            state.services["mongodb"] = mongodb.start(settings)
            state.save(self._state_file)

        state.services["qdrant"] = _qdrant_record(settings)
        if not state.services["qdrant"].running:
            raise ServiceUnavailable(
                "Qdrant at TWINOPS_QDRANT_URL is unreachable: start it, fix the URL or unset it to "
                "use local mode",
                setting="TWINOPS_QDRANT_URL",
            )
        if not settings.qdrant_url:
            settings.qdrant_local_path.mkdir(parents=True, exist_ok=True)

        if settings.mlflow_tracking_uri:
            uri = settings.mlflow_tracking_uri
            reachable = not uri.startswith("http") or mlflow_server.healthy(uri)
            if not reachable:
                raise ServiceUnavailable(
                    "MLflow at TWINOPS_MLFLOW_TRACKING_URI is unreachable: fix the URI or unset it "
                    "to use the embedded server",
                    setting="TWINOPS_MLFLOW_TRACKING_URI",
                )
            state.services["mlflow"] = _external_record("mlflow", uri, True)
        elif not _alive(state.services.get("mlflow"), mlflow_server.healthy):
            _clear_remains("mlflow", state.services.get("mlflow"), mlflow_server.store(settings))
            state.services["mlflow"] = mlflow_server.start(settings)
        state.save(self._state_file)
        return state.services

    def down(self) -> list[str]:
        """Stop only what ``up`` started (by PID); return the names stopped."""
        state = self._load()
        stopped = []
        for name, record in list(state.services.items()):
            if record.managed and record.pid:
                stop_pid(record.pid)
                stopped.append(name)
            state.services.pop(name)
        state.save(self._state_file)
        return stopped

    def status(self) -> dict[str, ServiceRecord]:
        state = self._load()
        report: dict[str, ServiceRecord] = {}
        settings = self.settings
        if settings.mongodb_uri:
            report["mongodb"] = _external_record(
                "mongodb", settings.mongodb_uri, mongodb.ping(settings.mongodb_uri)
            )
        else:
            record = state.services.get("mongodb")
            report["mongodb"] = (
                _mongodb_status(record)
                if record
                else ServiceRecord(name="mongodb", uri="", running=False, detail="not started")
            )
        report["qdrant"] = _qdrant_record(settings)
        if settings.mlflow_tracking_uri:
            uri = settings.mlflow_tracking_uri
            report["mlflow"] = _external_record(
                "mlflow", uri, not uri.startswith("http") or mlflow_server.healthy(uri)
            )
        else:
            record = state.services.get("mlflow")
            report["mlflow"] = (
                record.model_copy(update={"running": _alive(record, mlflow_server.healthy)})
                if record
                else ServiceRecord(name="mlflow", uri="", running=False, detail="not started")
            )
        return report
