# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The dpo component: preference alignment (DPO with LoRA) of the SFT model."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.TRAIN), install_kfp_package=False)
def dpo(
    sft_model: Input[Model],
    preference: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    epochs: float = 0.0,
    max_steps: int = 20,
    options: dict = {},
    train_on: str = "pod",
    trainjob: dict = {},
) -> str:
    """Align the SFT model on the preference dataset with DPO (LoRA) and merge the adapter.

    Calls ``twinops.training.train_dpo`` starting from the merged SFT model; the run lands under
    ``TWINOPS_HOME/runs/dpo/<run>/`` and is tracked in MLflow, linked to both dataset versions.

    Args:
        sft_model: Pointer to the merged SFT model (from ``sft``).
        preference: Pointer to the preference DatasetVersion (from ``build_datasets``).
        epochs: Passes over the preference rows, ``max_steps`` being their ceiling; 0: exactly ``max_steps``.
        max_steps: Optimizer steps (with ``epochs``: at most; -1: no ceiling).
        options: Extra ``DPOJob`` fields as a mapping (beta, learning rate, LoRA rank).
        train_on: ``pod`` trains in this step's pod; ``trainjob`` as a Kubeflow Trainer TrainJob.
        trainjob: The TrainJob's ``num_nodes``, ``gpus_per_node`` and ``runtime`` (train_on=trainjob).
        model: Pointer to the merged DPO model folder.
        metrics: DPO loss, reward margins and accuracies.
        report: The run's key facts.

    Returns:
        The MLflow run id of the training run.
    """
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import build_training_job
    from twinops.pipelines.train_placement import train_stage
    from twinops.training import DPOJob, train_dpo

    settings = artifacts.component_settings()
    upstream = artifacts.read_pointer(sft_model)
    dataset = artifacts.read_pointer(preference)
    fields = {
        "dataset": dataset["version_id"],
        "model": str(artifacts.pointer_path(upstream, settings)),
        **dict(options),
    }
    job = build_training_job(DPOJob, fields, max_steps=max_steps, epochs=epochs or None)
    result = train_stage(job, settings, train_on=train_on, trainjob=trainjob, in_pod=train_dpo)
    info = artifacts.model_pointer_info(result)
    # The twin saw the SFT data too: keep the whole lineage on the model.
    lineage = list(dict.fromkeys([*upstream.get("dataset_version_ids", []), *result.dataset_version_ids]))
    info["dataset_version_ids"] = lineage
    info["base_model"] = upstream.get("base_model", result.base_model)
    artifacts.write_pointer(model, kind="llm", path=result.model_dir, settings=settings, **info)
    logged = artifacts.log_metrics(metrics, dict(result.metrics))
    artifacts.write_text(report, artifacts.markdown_table("DPO run", {**info, **logged}))
    return str(result.mlflow_run_id or result.run_name)
