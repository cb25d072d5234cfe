"""Log a dataset build to MLflow: one run in experiment ``twinops-datasets``, every split as an input.

Each split is an ``mlflow.data`` Hugging Face dataset whose digest is the DatasetVersion id and
whose source is its folder, so a training run that logs the same inputs links back to this data.
"""

from __future__ import annotations

from twinops.domain import DatasetVersion
from twinops.settings import Settings

STAGE = "datasets"  # experiment twinops-datasets


def log_build(
    settings: Settings,
    versions: list[DatasetVersion],
    *,
    params: dict[str, str | int | float | bool | None],
    metrics: dict[str, float],
) -> str:
    """Log the build and return the MLflow run id."""
    import mlflow

    from twinops.infra.dataset_store import load_splits
    from twinops.infra.tracking import ensure_experiment, log_dataset_input

    experiment_id = ensure_experiment(STAGE, settings)
    run_name = "datasets-" + "-".join(version.id.split("-")[-1][:6] for version in versions[:1])
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({key: "" if value is None else value for key, value in params.items()})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.set_tag("dataset_version_ids", ",".join(version.id for version in versions))
        for version in versions:
            mlflow.set_tag(f"dataset.{version.kind.value}", version.id)
            for split, dataset in load_splits(version).items():
                log_dataset_input(version, dataset, split, name=f"{version.kind.value}-{split}")
        return run.info.run_id
