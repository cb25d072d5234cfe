"""Log a dataset build to MLflow: one run in experiment ``twinops-datasets``, every split as an input.

Each split is an ``mlflow.data`` Hugging Face dataset whose digest is the DatasetVersion id and
whose source is its folder, so a training run that logs the same inputs links back to this data.
"""

from __future__ import annotations

from twinops.domain import DatasetVersion
from twinops.services.manager import mlflow_tracking_uri
from twinops.settings import Settings

EXPERIMENT = "twinops-datasets"


def log_build(
    settings: Settings,
    versions: list[DatasetVersion],
    *,
    params: dict[str, str | int | float | bool | None],
    metrics: dict[str, float],
) -> str:
    """Log the build and return the MLflow run id."""
    import mlflow
    import mlflow.data
    from mlflow.data.sources import LocalArtifactDatasetSource

    from twinops.datasets.store import load_splits

    mlflow.set_tracking_uri(mlflow_tracking_uri(settings))
    mlflow.set_experiment(EXPERIMENT)
    run_name = "datasets-" + "-".join(version.id.split("-")[-1][:6] for version in versions[:1])
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({key: "" if value is None else value for key, value in params.items()})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.set_tag("dataset_version_ids", ",".join(version.id for version in versions))
        for version in versions:
            mlflow.set_tag(f"dataset.{version.kind.value}", version.id)
            for split, dataset in load_splits(version).items():
                mlflow.log_input(
                    mlflow.data.from_huggingface(
                        dataset,
                        # Explicit: a bare path matches two registered source types (a warning).
                        source=LocalArtifactDatasetSource(f"{version.uri}/hf"),
                        name=f"{version.kind.value}-{split}",
                        digest=version.id,
                    ),
                    context=split,
                    tags={"dataset_version_id": version.id, "kind": version.kind.value},
                )
        return run.info.run_id
