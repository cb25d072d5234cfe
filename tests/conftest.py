"""Shared fixtures: an isolated TWINOPS_HOME, the embedded services, the bundled and tiny models."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinops.settings import Settings, get_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def _models_home() -> Path:
    """Where `make test` cached the bundled models (TWINOPS_HOME of the Makefile)."""
    return Path(os.environ.get("TWINOPS_HOME", PROJECT_ROOT / ".twinops")).resolve()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TWINOPS_HOME per test, with no TWINOPS_* endpoint leaking in from outside."""
    for key in list(os.environ):
        if key.startswith("TWINOPS_") and key != "TWINOPS_HOME":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TWINOPS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


@pytest.fixture
def settings(home: Path) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def bundled_models_dir() -> Path:
    """The models `twinops models pull` cached; the suite pulls them first (see Makefile)."""
    models = _models_home() / "models"
    if not (models / "smollm2-135m-instruct" / "config.json").exists():
        from twinops.models.bundled import pull_all

        pull_all(Settings(home=_models_home()))
    return models


@pytest.fixture(scope="session")
def tiny_llama(bundled_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from twinops.models.tiny import build_tiny_llama

    target = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    return build_tiny_llama(bundled_models_dir / "smollm2-135m-instruct", target)


@pytest.fixture(scope="session")
def embedded_mongodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SecantusDB wire server on a free 127.0.0.1 port for the whole session."""
    from twinops.services import mongodb
    from twinops.services.process import stop_pid

    home = tmp_path_factory.mktemp("mongo-home")
    record = mongodb.start(Settings(home=home))
    yield record.uri
    stop_pid(record.pid)


@pytest.fixture
def mongo_settings(
    home: Path,
    embedded_mongodb: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Settings:
    """Settings pointing at the session's wire server, with a database of this test's own."""
    # The node id's hash keeps apart same-named tests of different modules (a database outlives a test).
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    database = "t_" + request.node.name.replace("[", "_").replace("]", "")[:40] + "_" + digest
    monkeypatch.setenv("TWINOPS_MONGODB_URI", embedded_mongodb)
    monkeypatch.setenv("TWINOPS_MONGODB_DATABASE", database)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, migrated once; each test gets a copy (migrations take seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_settings(
    home: Path, mlflow_template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings whose MLflow tracking URI is a sqlite file of this test's own."""
    database = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template_db, database)
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Iterator[str]:
    """A real ``mlflow server`` over REST, started as ``make run`` and ``twinops services up`` start it
    (``services.mlflow_server``: sqlite store, proxied artifacts), once per session (a start takes
    up to a minute on a busy 2-core machine); its URI."""
    from twinops.services import mlflow_server as embedded
    from twinops.services.process import stop_pid

    server_settings = Settings(home=tmp_path_factory.mktemp("mlflow-server"))
    store = embedded.store(server_settings)
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_template_db, store)  # already migrated
    record = embedded.start(server_settings)
    yield record.uri
    stop_pid(record.pid)


def _forget_everything(uri: str) -> None:
    """The server as new to the next test: registered models deleted (MLflow deletes them for good),
    experiments renamed out of the way and deleted (a deleted experiment would still hold its name)."""
    import uuid

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for model in client.search_registered_models():
        client.delete_registered_model(model.name)
    for experiment in client.search_experiments():
        if experiment.experiment_id != "0":  # Default cannot be deleted
            client.rename_experiment(experiment.experiment_id, f"{experiment.name}.{uuid.uuid4().hex[:8]}")
            client.delete_experiment(experiment.experiment_id)


@pytest.fixture
def mlflow_server_settings(
    home: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings whose MLflow is the session's ``mlflow server``, emptied for this test."""
    _forget_everything(mlflow_server)
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", mlflow_server)
    get_settings.cache_clear()
    yield get_settings()
