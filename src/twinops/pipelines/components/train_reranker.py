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
    """Fine-tune a sentence-transformers CrossEncoder on (query, positive, negatives) triples.

    Calls ``twinops.training.train_reranker``; the CrossEncoder folder lands under
    ``TWINOPS_HOME/runs/reranker/<run>/`` and is tracked in MLflow with the dataset version id.

    Args:
        reranker: Pointer to the reranker DatasetVersion (from ``build_datasets``).
        max_steps: Optimizer steps (small by default).
        options: Extra ``RerankerJob`` fields as a mapping (base cross-encoder, batch size).
        model: Pointer to the CrossEncoder folder.
        metrics: Reranking metrics on the test split (e.g. MRR, NDCG).
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
