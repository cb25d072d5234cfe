"""The embedded services as real processes: SecantusDB over TCP, MLflow's server, Qdrant local."""

import json
import socket
from pathlib import Path

import pytest
from pymongo import MongoClient
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.errors import ServiceUnavailable
from twinops.infra.endpoints import mlflow_tracking_uri, mongodb_uri
from twinops.infra.mongo import connect
from twinops.services.manager import ServiceManager
from twinops.services.process import free_port, pid_alive, port_in_use
from twinops.settings import Settings


def test_pymongo_round_trip_over_tcp(embedded_mongodb: str) -> None:
    assert embedded_mongodb.startswith("mongodb://127.0.0.1:")
    client: MongoClient = MongoClient(embedded_mongodb, serverSelectionTimeoutMS=5000)
    collection = client["roundtrip"]["things"]
    collection.delete_many({})
    collection.insert_one({"name": "twin", "n": 1})
    assert collection.find_one({"name": "twin"}, {"_id": 0}) == {"name": "twin", "n": 1}
    client.close()


@pytest.mark.slow
def test_up_status_down(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    manager = ServiceManager(settings)
    services = manager.up()
    try:
        mongo, mlflow = services["mongodb"], services["mlflow"]
        assert mongo.running and mongo.managed and pid_alive(mongo.pid)
        assert mlflow.uri.startswith("http://127.0.0.1:")
        # Each server runs in its own folder under TWINOPS_HOME.
        assert Path(mongo.workdir) == settings.services_dir / "mongodb"
        assert Path(mlflow.workdir) == settings.services_dir / "mlflow"
        assert mongodb_uri(settings) == mongo.uri
        assert mlflow_tracking_uri(settings) == mlflow.uri

        # `up` twice is harmless: same processes.
        again = manager.up()
        assert again["mongodb"].pid == mongo.pid and again["mlflow"].pid == mlflow.pid

        connect(settings)["probe"].insert_one({"ok": True})

        assert main(["services", "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert set(status) >= {"mongodb", "qdrant", "mlflow"}
        assert all(status[name]["running"] for name in ("mongodb", "qdrant", "mlflow"))
        assert status["qdrant"]["uri"] == str(settings.qdrant_local_path)
    finally:
        stopped = manager.down()
    assert set(stopped) == {"mongodb", "mlflow"}
    assert not pid_alive(mongo.pid) and not pid_alive(mlflow.pid)
    status = manager.status()
    assert not status["mongodb"].running and not status["mlflow"].running


def test_port_in_use_names_the_setting(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert port_in_use(port)
        monkeypatch.setenv("TWINOPS_MONGODB_PORT", str(port))
        from twinops.settings import get_settings

        get_settings.cache_clear()
        with pytest.raises(ServiceUnavailable, match="TWINOPS_MONGODB_PORT"):
            ServiceManager(get_settings()).up()


@pytest.mark.slow
def test_unreachable_external_mongodb_is_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("TWINOPS_MONGODB_URI", f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300")
    one_line_error(main, ["services", "up"], capsys, "TWINOPS_MONGODB_URI")


def test_clients_need_services_up_first(settings: Settings) -> None:
    with pytest.raises(ServiceUnavailable, match="twinops services up"):
        mongodb_uri(settings)


def test_a_connections_own_local_port_is_in_use_for_a_server() -> None:
    # kserve's gRPC server could not bind such a port ([::], EADDRINUSE): a test server died on it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as client:
            local_port = client.getsockname()[1]
            assert port_in_use(local_port)
    assert not port_in_use(free_port())
