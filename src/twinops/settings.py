"""One place for every endpoint and path. Env prefix ``TWINOPS_``, ``.env`` supported.

Unset endpoints mean "use the embedded default": the local services that ``twinops services up``
starts under ``TWINOPS_HOME``. Setting one points twinops at a cluster service instead.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twinops.errors import ConfigError, first_problem

BUNDLED_LLM = "bundled:smollm2-135m-instruct"
BUNDLED_EMBEDDER = "bundled:all-minilm-l6-v2"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``TWINOPS_<FIELD>`` or in ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="TWINOPS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(Path(".twinops"), description="Data, model cache and service state.")

    mongodb_uri: str | None = Field(None, description="External MongoDB URI; unset = embedded.")
    mongodb_database: str = Field("twinops", description="Database used when the URI names none.")
    mongodb_server_bin: str | None = Field(
        None, description="Wire-server executable for the embedded MongoDB (default: SecantusDB)."
    )
    mongodb_port: int | None = Field(None, description="Port of the embedded MongoDB; unset = free.")

    qdrant_url: str | None = Field(None, description="Qdrant server URL; unset = local mode.")
    qdrant_api_key: str | None = None
    qdrant_path: Path | None = Field(None, description="Qdrant local-mode folder.")
    qdrant_replication_factor: int = Field(
        1, ge=1, description="Copies of each shard in new collections on a Qdrant cluster (prod: 2)."
    )

    mlflow_tracking_uri: str | None = Field(None, description="MLflow tracking URI; unset = embedded.")
    mlflow_port: int | None = Field(None, description="Port of the embedded MLflow; unset = free.")

    feast_repo: Path | None = Field(None, description="Feast feature repo; unset = generated one.")
    feast_online_store: Literal["sqlite", "redis"] = Field(
        "sqlite", description="Feast online store: sqlite under TWINOPS_HOME, or redis (cluster)."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the Feast online store.")

    base_model: str = Field(BUNDLED_LLM, description="Base LLM: HF id, local path or bundled:NAME.")
    embedding_model: str = Field(BUNDLED_EMBEDDER, description="Embedder: HF id, path or bundled.")

    generator_url: str | None = Field(None, description="OpenAI-compatible URL (ending /v1) for datasets.")
    generator_model: str | None = Field(None, description="Model name sent to the generator endpoint.")
    generator_api_key: str | None = Field(None, description="Bearer key for the generator endpoint.")
    generator_timeout: float = Field(60.0, description="Seconds per generator request before a retry.")

    quantize_python: Path | None = Field(
        None, description="Python of the GPTQ environment; unset = .venv-quantize beside the project."
    )
    judge_url: str | None = Field(None, description="OpenAI-compatible base URL (ending /v1) of the judge.")
    judge_model: str | None = Field(None, description="Model name sent to the judge endpoint.")
    judge_api_key: str | None = Field(None, description="Bearer key for the judge endpoint.")
    service_start_timeout: float = Field(60.0, description="Seconds to wait for a service to start.")
    feedback_token: SecretStr | None = Field(
        None,
        description="Bearer token POST /feedback requires (from the Secret); with neither this nor "
        "feedback_user_header set, the RAG server takes no feedback.",
    )
    feedback_user_header: str | None = Field(
        None,
        description="Header naming the user the gateway authenticated (e.g. kubeflow-userid); POST "
        "/feedback then counts one vote per user. Only behind a gateway that sets it and strips it "
        "from clients.",
    )
    prometheus_url: str | None = Field(
        None, description="Prometheus base URL for canary rollouts; unset = probe the canary instead."
    )
    trainjob_runtime: str = Field(
        "torch-distributed",
        description="Kubeflow Trainer runtime (Cluster- or TrainingRuntime) that SFT/DPO TrainJobs run on.",
    )
    trainjob_schedule_timeout: float = Field(
        900.0, description="Seconds a TrainJob's pods may stay unschedulable before the step fails."
    )
    namespace: str | None = Field(
        None,
        description="Kubernetes namespace `twinops pipeline submit` runs in (a multi-user Kubeflow "
        "profile); unset = the kubeconfig context's.",
    )

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        # Absolute so that subprocesses (KFP local tasks, servers) resolve the same folder.
        return home.expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def services_dir(self) -> Path:
        return self.home / "services"

    @property
    def services_state_file(self) -> Path:
        return self.home / "services.json"

    @property
    def qdrant_local_path(self) -> Path:
        return (self.qdrant_path or self.home / "qdrant").expanduser().resolve()

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def under_home(self, path: str | Path) -> Path:
        """``path`` as given when absolute, else inside TWINOPS_HOME: the folder every pipeline step,
        server and detector mounts, so a relative path means the same file to all of them."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.home / path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests call ``get_settings.cache_clear()``.

    A value that does not parse (``TWINOPS_MONGODB_PORT=abc``) is a ``ConfigError`` naming the
    variable, not a pydantic traceback.
    """
    try:
        return Settings()
    except ValidationError as error:
        raise settings_error(error) from error


def settings_error(error: ValidationError) -> ConfigError:
    """One line for the first invalid setting: its variable, the value given, and why."""
    problem = first_problem(error)
    variable = f"{Settings.model_config['env_prefix']}{problem.where or '?'}".upper()
    more = f" (and {problem.others} more)" if problem.others else ""
    return ConfigError(
        f"{variable}={problem.value!r} is not valid: {problem.message}{more}; fix or unset it",
        setting=variable,
    )
