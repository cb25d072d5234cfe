"""MLflow tracking for every training run: one experiment per stage, params, metrics, datasets,
artifacts and the software environment.

The tracking URI comes from ``mlflow_tracking_uri(settings)`` (the embedded server, or any
``TWINOPS_MLFLOW_TRACKING_URI`` such as ``sqlite:///...`` in tests). With a sqlite/file store the
artifacts go under ``TWINOPS_HOME/mlflow-artifacts`` instead of the working directory.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

from twinops.domain.versions import DatasetVersion
from twinops.errors import ServiceUnavailable
from twinops.infra.registry import use_tracking
from twinops.settings import Settings

if TYPE_CHECKING:
    from datasets import Dataset

EXPERIMENT_PREFIX = "twinops-"
# Versions worth a glance on the run page; the full freeze is an artifact.
KEY_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sentence-transformers")


def experiment_name(stage: str) -> str:
    return f"{EXPERIMENT_PREFIX}{stage}"


def _uses_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def ensure_experiment(stage: str, settings: Settings) -> str:
    """The id of the stage's experiment, created on first use."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = use_tracking(settings)
    client = MlflowClient(uri)
    name = experiment_name(stage)
    try:
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        location = None
        if _uses_local_store(uri):
            folder = settings.home / "mlflow-artifacts" / name
            folder.mkdir(parents=True, exist_ok=True)
            location = folder.resolve().as_uri()
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        raise ServiceUnavailable(
            f"MLflow at {uri} refused the request ({str(error).splitlines()[0][:160]}): run "
            "`twinops services up` or fix TWINOPS_MLFLOW_TRACKING_URI",
            setting="TWINOPS_MLFLOW_TRACKING_URI",
        ) from error


def environment_snapshot() -> dict[str, Any]:
    """Python, platform, accelerator and the versions of the packages that shape training."""
    import torch

    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count(),
        "cpu_threads": torch.get_num_threads(),
        "packages": versions,
    }


def pip_freeze() -> str:
    """``pip freeze`` without a subprocess: every installed distribution and its version."""
    lines = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def log_dataset_input(
    version: DatasetVersion, dataset: Dataset, context: str, *, name: str | None = None
) -> None:
    """Record a split as a run input whose digest is its DatasetVersion id, so the dataset build's
    run and every training run that read the same data share one MLflow dataset identity."""
    import warnings

    import mlflow
    from mlflow.data.sources import LocalArtifactDatasetSource

    with warnings.catch_warnings():
        # mlflow warns about integer schema columns; harmless.
        warnings.simplefilter("ignore")
        tracked = mlflow.data.from_huggingface(
            dataset,
            name=name or version.id,
            digest=version.id,
            # Explicit: a bare path matches two registered source types.
            source=LocalArtifactDatasetSource(f"{version.uri or '.'}/hf"),
        )
        mlflow.log_input(
            tracked, context=context, tags={"dataset_version_id": version.id, "kind": version.kind}
        )


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_params(value, prefix=f"{name}."))
        else:
            # MLflow caps a param value at 6000 characters.
            flat[name] = str(value)[:5000]
    return flat


@contextmanager
def tracked_run(
    stage: str,
    settings: Settings,
    *,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """An MLflow run in the stage's experiment with params and environment logged; yields its id.

    An exception inside marks the run FAILED (mlflow's context manager), so a crashed training
    never looks like a finished one.
    """
    import mlflow

    experiment_id = ensure_experiment(stage, settings)
    environment = environment_snapshot()
    # Nested when a caller (a notebook, a pipeline step) already has a run open.
    nested = mlflow.active_run() is not None
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested) as run:
        mlflow.set_tags({"twinops.stage": stage, **(tags or {})})
        mlflow.set_tags({f"env.{k}": v for k, v in environment["packages"].items()})
        mlflow.log_params(_flat_params(params))
        mlflow.log_dict(environment, "environment/environment.json")
        mlflow.log_text(pip_freeze(), "environment/requirements.txt")
        yield run.info.run_id


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    import mlflow

    numeric = {_metric_key(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    if numeric:
        mlflow.log_metrics(numeric, step=step)


def _metric_key(key: str) -> str:
    # MLflow metric names allow / but not every character trl uses; keep them readable.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def log_json(payload: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(payload, indent=2, default=str), artifact_file)
