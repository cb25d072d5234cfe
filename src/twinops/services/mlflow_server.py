"""The embedded MLflow tracking server: sqlite backend, local artifacts, UI on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from twinops.errors import ServiceUnavailable
from twinops.infra.service_state import ServiceRecord
from twinops.services.process import free_port, port_in_use, start_detached, tail, wait_until
from twinops.settings import Settings


def healthy(uri: str) -> bool:
    try:
        return httpx.get(f"{uri.rstrip('/')}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def store(settings: Settings) -> Path:
    """The sqlite file the embedded server keeps runs and the registry in: one server at a time."""
    return settings.services_dir / "mlflow" / "mlflow.db"


def start(settings: Settings) -> ServiceRecord:
    port = settings.mlflow_port or free_port()
    if port_in_use(port):
        raise ServiceUnavailable(
            f"port {port} for the embedded MLflow is in use: set TWINOPS_MLFLOW_PORT to a free "
            "port or unset it to pick one",
            setting="TWINOPS_MLFLOW_PORT",
        )
    workdir = settings.services_dir / "mlflow"
    (workdir / "artifacts").mkdir(parents=True, exist_ok=True)
    log_file = workdir / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store(settings)}",
        "--artifacts-destination", str(workdir / "artifacts"),
    ]  # fmt: skip
    pid = start_detached(command, cwd=workdir, log_file=log_file)
    uri = f"http://127.0.0.1:{port}"
    if not wait_until(lambda: healthy(uri), timeout=max(settings.service_start_timeout, 90)):
        raise ServiceUnavailable(
            f"embedded MLflow did not answer on port {port}: {tail(log_file)}",
            setting="TWINOPS_MLFLOW_TRACKING_URI",
        )
    return ServiceRecord(
        name="mlflow", uri=uri, running=True, managed=True, pid=pid, port=port,
        workdir=str(workdir), log_file=str(log_file), ui_url=uri, detail="MLflow (sqlite)",
    )  # fmt: skip
