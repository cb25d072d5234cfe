from pathlib import Path

import pytest

from twinops.settings import BUNDLED_LLM, Settings, get_settings


def test_defaults_are_embedded(settings: Settings, home: Path) -> None:
    assert settings.home == home.resolve()
    assert settings.mongodb_uri is None
    assert settings.qdrant_url is None
    assert settings.mlflow_tracking_uri is None
    assert settings.base_model == BUNDLED_LLM
    assert settings.qdrant_local_path == home.resolve() / "qdrant"


def test_env_overrides(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINOPS_MONGODB_URI", "mongodb://db.example:27017/warehouse")
    monkeypatch.setenv("TWINOPS_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("TWINOPS_BASE_MODEL", "HuggingFaceTB/SmolLM2-360M-Instruct")
    settings = get_settings()
    assert settings.mongodb_uri == "mongodb://db.example:27017/warehouse"
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.base_model == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_dotenv_file(home: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TWINOPS_MONGODB_DATABASE=from_dotenv\nTWINOPS_QDRANT_PATH=/tmp/q\n")
    settings = get_settings()
    assert settings.mongodb_database == "from_dotenv"
    assert settings.qdrant_local_path == Path("/tmp/q")


def test_env_wins_over_dotenv(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TWINOPS_MONGODB_DATABASE=from_dotenv\n")
    monkeypatch.setenv("TWINOPS_MONGODB_DATABASE", "from_env")
    assert get_settings().mongodb_database == "from_env"


def test_a_relative_path_means_the_same_file_under_home_for_every_process(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert settings.under_home("queries/drifted.jsonl") == tmp_path / "home" / "queries" / "drifted.jsonl"
    assert settings.under_home(tmp_path / "elsewhere.jsonl") == tmp_path / "elsewhere.jsonl"
    assert settings.under_home("~/q.jsonl") == Path.home() / "q.jsonl"
