"""The MLflow model registry: ``twin-llm`` and ``twin-reranker`` versions linked to the dataset
versions they were trained on. A new version takes no alias: the gate (``gate.nominate``) points
``challenger`` at it when it passes, and the release (the rollout's promote) moves ``champion``.

A model version's MLflow ``source`` is ``runs:/<run>/model`` (a pointer artifact; MLflow servers
refuse bare local paths); the folder itself is in the tag ``model_dir`` and in
``ModelVersion.source_uri``. Metrics are tags ``metric.<name>``: training sets them at
registration and evaluation adds more with ``record_metrics``. The promotion gate is in ``gate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twinops.domain.twins import is_twin_model_name
from twinops.domain.versions import ModelVersion
from twinops.errors import ConfigError, NotFound
from twinops.infra.registry import (
    ADAPTER_MERGES_TO,
    ADAPTER_MISSING_TAG,
    ADAPTER_TAG,
    CHALLENGER,
    CHAMPION,
    LLM_MODEL,
    METRIC_TAG,
    MODEL_NAMES,
    RERANKER_MODEL,
    client,
    fails_fast,
    list_versions,
    require_registered,
    resource_missing,
    to_model_version,
    version_by_alias,
    version_metrics,
)
from twinops.infra.tracking import ensure_experiment
from twinops.settings import Settings
from twinops.training.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, SHARED_ADAPTER_DIR, SharedAdapter
from twinops.training.runs import TrainResult

# The read side lives in twinops.infra.registry (serving reads it without importing training);
# its names stay importable from here for existing callers.
__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DESCRIPTIONS",
    "LLM_MODEL",
    "METRIC_TAG",
    "MODEL_NAMES",
    "RERANKER_MODEL",
    "STAGE_MODEL",
    "client",
    "list_versions",
    "record_metrics",
    "register_model",
    "register_result",
    "require_registered",
    "to_model_version",
    "version_by_alias",
    "version_metrics",
]

STAGE_MODEL = {"sft": LLM_MODEL, "dpo": LLM_MODEL, "reranker": RERANKER_MODEL}
# The stages whose models are LLM twins: their versions point at an adapter on the base (or say why not).
LORA_STAGES = ("dapt", "sft", "dpo")
DESCRIPTIONS = {
    LLM_MODEL: "The LLM Twin: base model + DAPT + SFT + DPO (LoRA, merged; the adapter on the base "
    "in tag adapter_dir). Alias champion serves.",
    RERANKER_MODEL: "Cross-encoder reranker fine-tuned from MiniLM on the author's retrieval pairs.",
}
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,99}$")


def _validate_dataset_ids(ids: list[str], settings: Settings) -> None:
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    if not ids:
        raise ConfigError(
            "a model version must link to at least one dataset version id: pass dataset_version_ids"
        )
    repository = DatasetVersionRepository(connect(settings))
    for version_id in ids:
        repository.get(version_id)  # NotFound names the id


@fails_fast("registering the model")
def register_model(
    name: str,
    model_dir: str | Path,
    settings: Settings,
    *,
    base_model: str,
    dataset_version_ids: list[str],
    run_id: str | None = None,
    metrics: Mapping[str, float] | None = None,
    stage: str | None = None,
    alias: str | None = None,
    adapter: SharedAdapter | None = None,
    adapter_merges_to: str | Path | None = None,
) -> ModelVersion:
    """Register ``model_dir`` as a new version of ``name`` (and point ``alias`` at it, if given).

    ``adapter`` (an LLM twin's): its LoRA adapter on the shared base, tagged ``adapter_dir`` with
    ``base_model`` its base, or why it has none (``adapter_dir.missing``); ``adapter_merges_to``:
    the float model base + adapter equals, when ``model_dir`` is not that model (GPTQ). Everything
    is checked first (name, folders, dataset versions in the warehouse, the run), so bad input
    raises one line and registers nothing.
    """
    if not _NAME.match(name):
        raise ConfigError(f"model name {name!r} is not valid: use letters, digits, '-', '_' or '.'")
    folder = Path(model_dir).expanduser().resolve()
    if not (folder / "config.json").exists():
        raise NotFound(f"model folder {folder} has no config.json: pass the merged/ or reranker model folder")
    adapter_tags = _adapter_tags(adapter, base_model, merges_to=adapter_merges_to or folder)
    if adapter is not None and adapter.base_model:
        base_model = adapter.base_model
    ids = list(dataset_version_ids)
    _validate_dataset_ids(ids, settings)
    mlflow_client = client(settings)
    if run_id is not None:
        _require_run(mlflow_client, run_id)
    else:
        run_id = _registration_run(mlflow_client, name, settings)
    # The pointer makes ``runs:/<run>/model`` resolve to something that says where the weights are.
    pointer = {"model_dir": str(folder), "base_model": base_model, "dataset_version_ids": ids, "stage": stage}
    mlflow_client.log_dict(run_id, pointer, "model/twinops_model.json")
    tags = {
        "dataset_version_ids": ",".join(ids),
        "model_dir": str(folder),
        "base_model": base_model,
        **({"stage": stage} if stage else {}),
        **adapter_tags,
        **{f"{METRIC_TAG}{key}": repr(float(value)) for key, value in (metrics or {}).items()},
    }
    _ensure_registered_model(mlflow_client, name)
    created = mlflow_client.create_model_version(
        name, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags
    )
    if alias is not None:
        mlflow_client.set_registered_model_alias(name, alias, created.version)
    return to_model_version(mlflow_client.get_model_version(name, created.version), mlflow_client)


def register_result(result: TrainResult, settings: Settings, *, name: str | None = None) -> ModelVersion:
    """Register a training run's model under ``name`` (default its stage's: sft/dpo → twin-llm, the
    default author's twin; ``twin_model_name(author)`` names another author's)."""
    return register_model(
        name or STAGE_MODEL[result.stage],
        result.model_dir,
        settings,
        base_model=result.base_model,
        dataset_version_ids=result.dataset_version_ids,
        run_id=result.mlflow_run_id,
        metrics=result.metrics,
        stage=result.stage,
        adapter=shared_adapter_of(result.model_dump()) if result.stage in LORA_STAGES else None,
    )


def shared_adapter_of(fields: Mapping[str, Any]) -> SharedAdapter:
    """The adapter on the shared base a training result (or a model pointer carrying its fields) names."""
    return SharedAdapter(
        base_model=fields.get("shared_base"),
        adapter_dir=fields.get("shared_adapter_dir"),
        missing=fields.get("shared_adapter_missing")
        or (None if fields.get("shared_adapter_dir") else "the training run recorded no adapter on a base"),
    )


def _adapter_tags(adapter: SharedAdapter | None, base_model: str, *, merges_to: str | Path) -> dict[str, str]:
    """The version's adapter tags; an adapter folder that is not one, or not on its base, is refused."""
    if adapter is None:
        return {}
    if not adapter.adapter_dir or not adapter.base_model:
        return {ADAPTER_MISSING_TAG: (adapter.missing or "no adapter on a base was given")[:4000]}
    folder = Path(adapter.adapter_dir).expanduser().resolve()
    config_file = folder / ADAPTER_CONFIG
    if not config_file.exists() or not (folder / ADAPTER_WEIGHTS).exists():
        raise NotFound(
            f"adapter folder {folder} has no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}: pass the run's "
            f"{SHARED_ADAPTER_DIR}/ (or adapter/ when it started from the base)"
        )
    recorded = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if recorded != adapter.base_model:
        raise ConfigError(
            f"adapter {folder} applies to {recorded}, not to the base {adapter.base_model} it is registered "
            "on: register the run's adapter-on-base/ with the base its adapter_config.json names"
        )
    return {ADAPTER_TAG: str(folder), ADAPTER_MERGES_TO: str(merges_to)}


@fails_fast("recording the model's metrics")
def record_metrics(name: str, version: str, metrics: Mapping[str, float], settings: Settings) -> ModelVersion:
    """Attach (evaluation) metrics to a model version, where the promotion gate reads them."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    require_registered(mlflow_client, name)
    try:
        mlflow_client.get_model_version(name, str(version))
    except MlflowException as error:
        raise NotFound(f"{name} version {version} does not exist: see `twinops registry list`") from error
    for key, value in metrics.items():
        mlflow_client.set_model_version_tag(name, str(version), f"{METRIC_TAG}{key}", repr(float(value)))
    return to_model_version(mlflow_client.get_model_version(name, str(version)), mlflow_client)


def _ensure_registered_model(mlflow_client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException as error:
        if not resource_missing(error):
            raise
        twin = DESCRIPTIONS[LLM_MODEL] if is_twin_model_name(name) else ""
        mlflow_client.create_registered_model(name, description=DESCRIPTIONS.get(name, twin))


def _require_run(mlflow_client: Any, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_run(run_id)
    except MlflowException as error:
        raise NotFound(
            f"MLflow run {run_id!r} does not exist: pass the run id of the training run"
        ) from error


def _registration_run(mlflow_client: Any, name: str, settings: Settings) -> str:
    """A run in ``twinops-registry`` to own a version registered without its training run."""
    experiment_id = ensure_experiment("registry", settings)
    run = mlflow_client.create_run(
        experiment_id, run_name=f"register-{name}", tags={"twinops.stage": "registry"}
    )
    mlflow_client.set_terminated(run.info.run_id)
    return run.info.run_id
