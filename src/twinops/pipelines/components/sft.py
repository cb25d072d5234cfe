# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The sft component: supervised fine-tuning (LoRA) of the base LLM on the instruction dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.TRAIN), install_kfp_package=False)
def sft(
    instruction: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    start_model: Input[Model] = None,
    base_model: str = "",
    epochs: float = 0.0,
    max_steps: int = 20,
    options: dict = {},
    train_on: str = "pod",
    trainjob: dict = {},
) -> str:
    """Fine-tune the LLM with LoRA on the instruction dataset (TRL SFT) and merge the adapter.

    Calls ``twinops.training.train_sft``: the run lands under ``TWINOPS_HOME/runs/sft/<run>/``
    with ``adapter/`` and ``merged/`` and is tracked in MLflow with the dataset version id. The
    pipelines start it from the ``dapt`` step's model.

    Args:
        instruction: Pointer to the instruction DatasetVersion (from ``build_datasets``).
        start_model: Pointer to the model to start from (the merged DAPT model); it wins over ``base_model``.
        base_model: HF id, local path or ``bundled:NAME``; empty means TWINOPS_BASE_MODEL.
        epochs: Passes over the instruction rows, ``max_steps`` being their ceiling; 0: exactly ``max_steps``.
        max_steps: Optimizer steps (with ``epochs``: at most; -1: no ceiling).
        options: Extra ``SFTJob`` fields as a mapping (learning rate, LoRA rank, batch size).
        train_on: ``pod`` trains in this step's pod; ``trainjob`` as a Kubeflow Trainer TrainJob.
        trainjob: The TrainJob's ``num_nodes``, ``gpus_per_node`` and ``runtime`` (train_on=trainjob).
        model: Pointer to the merged model folder, with the MLflow run id and dataset ids.
        metrics: Training loss and eval metrics of the run.
        report: The run's key facts (base model, steps, loss, where the model is).

    Returns:
        The MLflow run id of the training run.
    """
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import build_training_job
    from twinops.pipelines.train_placement import train_stage
    from twinops.training import SFTJob, train_sft

    settings = artifacts.component_settings()
    dataset = artifacts.read_pointer(instruction)
    fields = {"dataset": dataset["version_id"], **dict(options)}
    upstream = artifacts.read_pointer(start_model) if start_model is not None else {}
    if upstream:
        fields["model"] = str(artifacts.pointer_path(upstream, settings))
    elif base_model:
        fields["model"] = base_model
    job = build_training_job(SFTJob, fields, max_steps=max_steps, epochs=epochs or None)
    result = train_stage(job, settings, train_on=train_on, trainjob=trainjob, in_pod=train_sft)
    # From a DAPT run: the lineage goes on to the base model it adapted.
    lineage = {"base_model": upstream.get("base_model"), "start_model": result.base_model} if upstream else {}
    return artifacts.write_trained_model(
        result, model=model, metrics=metrics, report=report, title="SFT run", settings=settings, **lineage
    )
