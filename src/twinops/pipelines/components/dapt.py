# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The dapt component: domain-adaptive pretraining (LoRA) of the base LLM on the author's own text."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.TRAIN), install_kfp_package=False)
def dapt(
    instruction: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    base_model: str = "",
    epochs: float = 2.0,
    max_steps: int = 60,
    options: dict = {},
    train_on: str = "pod",
    trainjob: dict = {},
) -> str:
    """Adapt the base LLM to the author's own text with LoRA (continued pretraining) and merge it.

    Calls ``twinops.training.train_dapt``: the answers of the instruction dataset's train split
    (the author's passages; the held-out documents are not read) as plain causal-LM text, in
    blocks of ``max_length`` tokens. The run lands under ``TWINOPS_HOME/runs/dapt/<run>/`` with
    ``adapter/`` and ``merged/``; the sft step starts from ``merged/``.

    Args:
        instruction: Pointer to the instruction DatasetVersion (from ``build_datasets``).
        base_model: HF id, local path or ``bundled:NAME``; empty means TWINOPS_BASE_MODEL.
        epochs: Passes over the passages (the step count follows the amount of text).
        max_steps: Ceiling on optimizer steps, where the epochs stop on a large corpus; -1: none.
        options: Extra ``DAPTJob`` fields as a mapping (learning rate, LoRA rank, block length).
        train_on: ``pod`` trains in this step's pod; ``trainjob`` as a Kubeflow Trainer TrainJob.
        trainjob: The TrainJob's ``num_nodes``, ``gpus_per_node`` and ``runtime`` (train_on=trainjob).
        model: Pointer to the merged model folder, with the MLflow run id and dataset ids.
        metrics: Training loss and the test passages' perplexity.
        report: The run's key facts (base model, steps, loss, where the model is).

    Returns:
        The MLflow run id of the training run.
    """
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import build_training_job
    from twinops.pipelines.train_placement import train_stage
    from twinops.training import DAPTJob, train_dapt

    settings = artifacts.component_settings()
    dataset = artifacts.read_pointer(instruction)
    fields = {"dataset": dataset["version_id"], **dict(options)}
    if base_model:
        fields["model"] = base_model
    job = build_training_job(DAPTJob, fields, max_steps=max_steps, epochs=epochs)
    result = train_stage(job, settings, train_on=train_on, trainjob=trainjob, in_pod=train_dapt)
    return artifacts.write_trained_model(
        result, model=model, metrics=metrics, report=report, title="DAPT run", settings=settings
    )
