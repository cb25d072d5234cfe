# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The train-reranker component: fine-tune a cross-encoder reranker for retrieval."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.TRAIN), install_kfp_package=False)
def train_reranker(
    reranker: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    max_steps: int = 20,
    options: dict = {},
) -> str:
    """Train the reranker: learned cosine and term-overlap weights, a cross-encoder on top.

    Calls ``twinops.training.train_reranker``: each query's top-12 Qdrant candidates are ranked by
    the cross-encoder's logit plus learned weights times their cosine and their query-word overlap
    (an untrained reranker ranks exactly as cosine does), with a listwise loss. The weights are
    fitted first on every training list, then the cross-encoder trains. The reranker folder lands under
    ``TWINOPS_HOME/runs/reranker/<run>/`` and is tracked in MLflow with the dataset version id.

    Args:
        reranker: Pointer to the reranker DatasetVersion (from ``build_datasets``).
        max_steps: Optimizer steps (small by default).
        options: Extra ``RerankerJob`` fields as a mapping (candidates, validation_fraction, trainer).
        model: Pointer to the CrossEncoder folder.
        metrics: hit@5 and MRR on the validation and golden-test queries, reranked and in cosine
            order, with 95% bootstrap intervals.
        report: The run's key facts.

    Returns:
        The MLflow run id of the training run.
    """
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import build_training_job
    from twinops.training import RerankerJob
    from twinops.training import train_reranker as run_training

    settings = artifacts.component_settings()
    dataset = artifacts.read_pointer(reranker)
    fields = {"dataset": dataset["version_id"], **dict(options)}
    result = run_training(build_training_job(RerankerJob, fields, max_steps=max_steps), settings)
    info = artifacts.model_pointer_info(result)
    artifacts.write_pointer(model, kind="reranker", path=result.model_dir, settings=settings, **info)
    logged = artifacts.log_metrics(metrics, dict(result.metrics))
    artifacts.write_text(report, artifacts.markdown_table("Reranker run", {**info, **logged}))
    return str(result.mlflow_run_id or result.run_name)
