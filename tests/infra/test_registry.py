"""The registry read side against a real MLflow store (a sqlite file, ``mlflow_settings``) with
versions registered the way training registers them: a run, ``source=runs:/<run>/model`` and the
folder in the tag ``model_dir``.

Any folder with a config.json stands for a model here; nothing is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from twinops.errors import ConfigError, ModelNotFound, NotFound, ServiceUnavailable
from twinops.infra.registry import (
    CHALLENGER,
    CHAMPION,
    ResolvedModel,
    champion_or_none,
    fast_fail,
    list_versions,
    resolve_model_uri,
)
from twinops.settings import Settings, get_settings

SETTING = "--model-dir"


def _model_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    return folder


@pytest.fixture
def register(mlflow_settings: Settings, tmp_path: Path) -> Callable[..., str]:
    """Register a folder as a new version of ``name`` (aliases optional); return the version."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_settings.mlflow_tracking_uri)

    def _register(name: str, aliases: tuple[str, ...] = (), folder: Path | None = None) -> str:
        folder = folder or _model_folder(tmp_path, f"{name}-{len(list(tmp_path.iterdir()))}")
        experiment = client.get_experiment_by_name("registry") or client.get_experiment(
            client.create_experiment("registry")
        )
        run = client.create_run(experiment.experiment_id)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        version = client.create_model_version(
            name,
            source=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={"model_dir": str(folder)},
        ).version
        for alias in aliases:
            client.set_registered_model_alias(name, alias, version)
        return str(version)

    return _register


def test_alias_and_version_resolve_to_the_registered_folder(register, mlflow_settings, tmp_path) -> None:
    first = _model_folder(tmp_path, "first")
    second = _model_folder(tmp_path, "second")
    register("twin-a", (CHAMPION,), first)
    register("twin-a", (CHALLENGER,), second)

    champion = resolve_model_uri("models:/twin-a@champion", mlflow_settings, setting=SETTING)
    assert champion == ResolvedModel(
        name="twin-a", version="1", alias=CHAMPION, model_dir=str(first), label="twin-a v1 [champion]"
    )
    challenger = resolve_model_uri("models:/twin-a@challenger", mlflow_settings, setting=SETTING)
    assert (challenger.version, challenger.model_dir) == ("2", str(second))

    by_number = resolve_model_uri("models:/twin-a/2", mlflow_settings, setting=SETTING)
    assert by_number.alias is None and by_number.model_dir == str(second) and by_number.label == "twin-a v2"
    # The read side lists what was registered, aliases included.
    listed = {(v.version, v.aliases) for v in list_versions(mlflow_settings, ("twin-a",))}
    assert listed == {("1", (CHAMPION,)), ("2", (CHALLENGER,))}


def test_unknown_alias_version_and_name_say_what_to_fix(register, mlflow_settings) -> None:
    register("twin-b", (CHALLENGER,))
    cases = {
        "models:/twin-b@champion": "alias 'champion' does not exist on registered model 'twin-b'",
        "models:/twin-b/7": "version 7 does not exist on registered model 'twin-b'",
        "models:/no-such-model@champion": "registered model 'no-such-model' does not exist",
    }
    for uri, expected in cases.items():
        with pytest.raises(NotFound) as caught:
            resolve_model_uri(uri, mlflow_settings, setting=SETTING)
        message = str(caught.value)
        assert expected in message and SETTING in message and "\n" not in message


def test_malformed_models_uri_is_a_config_error(mlflow_settings) -> None:
    with pytest.raises(ConfigError, match="models:/NAME@ALIAS"):
        resolve_model_uri("models:/twin-llm", mlflow_settings, setting=SETTING)


def test_version_whose_folder_is_gone_is_model_not_found(register, mlflow_settings, tmp_path) -> None:
    folder = _model_folder(tmp_path, "deleted")
    register("twin-c", (CHAMPION,), folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelNotFound, match=r"twin-c v1 \[champion\] points to"):
        resolve_model_uri("models:/twin-c@champion", mlflow_settings, setting=SETTING)
    # A champion that cannot be served is not "no champion": no silent fallback to the base model.
    with pytest.raises(ModelNotFound):
        champion_or_none("twin-c", mlflow_settings)


def test_a_folder_resolves_without_mlflow(settings, tmp_path) -> None:
    folder = _model_folder(tmp_path, "plain")
    resolved = resolve_model_uri(str(folder), settings, setting=SETTING)
    assert resolved == ResolvedModel(model_dir=str(folder), label=str(folder))
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        resolve_model_uri(str(tmp_path), settings, setting=SETTING)


def test_champion_or_none(register, mlflow_settings, tmp_path) -> None:
    assert champion_or_none("twin-d", mlflow_settings) is None  # no such model
    register("twin-d", (CHALLENGER,))
    assert champion_or_none("twin-d", mlflow_settings) is None  # no champion alias
    folder = _model_folder(tmp_path, "champion")
    register("twin-d", (CHAMPION,), folder)
    champion = champion_or_none("twin-d", mlflow_settings)
    assert champion is not None and champion.model_dir == str(folder) and champion.version == "2"


@pytest.mark.slow
def test_unreachable_tracking_server_fails_at_once(settings, monkeypatch) -> None:
    """Nothing listens on the port: one ServiceUnavailable line naming the setting, not minutes of
    retries (MLflow's default) ending in a traceback."""
    from twinops.services.process import free_port

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    for call in (
        lambda: resolve_model_uri("models:/twin-llm@champion", get_settings(), setting=SETTING),
        lambda: champion_or_none("twin-llm", get_settings()),
    ):
        with pytest.raises(ServiceUnavailable) as caught:
            call()
        message = str(caught.value)
        assert "TWINOPS_MLFLOW_TRACKING_URI" in message and "\n" not in message


def test_fast_fail_bounds_mlflow_retries_only_inside_and_respects_the_environment(monkeypatch) -> None:
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "42")  # the user's own choice wins
    default_retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    assert default_retries > 0
    with fast_fail():
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
        assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 42
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == default_retries
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 42
