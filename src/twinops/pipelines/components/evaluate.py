# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The evaluate component: score the twin on the golden set and write the evaluation report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.TRAIN), install_kfp_package=False)
def evaluate(
    model: Input[Model],
    sft_model: Input[Model],
    dpo_model: Input[Model],
    golden: Input[Dataset],
    preference: Input[Dataset],
    reranker_model: Input[Model],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    max_questions: int = 16,
    base_model: str = "",
    compare: bool = True,
    options: dict = {},
) -> float:
    """Evaluate the twin on the golden set: perplexity, answer similarity, style, retrieval.

    With ``compare`` (the default) the base model, the SFT model and the DPO model are scored
    beside the quantized twin, so the report shows what each training step bought; the gate reads
    the twin's scores.

    Calls ``twinops.evaluation.evaluate``: answers to the golden instructions are scored against
    the references (perplexity, embedding cosine, ROUGE-L, a style classifier trained on the
    preference pairs, the LLM judge when one is configured) and retrieval is measured in Qdrant
    with and without the new reranker. The report is logged to MLflow and copied here as HTML so
    the Kubeflow Pipelines UI shows it next to the scalar metrics.

    Args:
        model: Pointer to the model to evaluate (the quantized twin).
        sft_model: Pointer to the merged SFT model (compared).
        dpo_model: Pointer to the merged DPO model (compared).
        golden: Pointer to the golden DatasetVersion (from ``build_datasets``).
        preference: Pointer to the preference DatasetVersion (trains the style classifier).
        reranker_model: Pointer to the CrossEncoder from ``train_reranker``.
        max_questions: Golden questions answered (generation dominates the time).
        base_model: The base model reference (empty: the configured TWINOPS_BASE_MODEL).
        compare: Score base, SFT and DPO beside the twin (four times the generation time).
        options: Extra ``EvaluationJob`` fields as a mapping (max_new_tokens, judge, retrieval_k).
        evaluation: JSON with ``metrics`` (``eval_*`` and ``retrieval_*``, what the registry gate
            reads) and the full evaluation ``report``.
        metrics: The same scalar metrics.
        report: The HTML evaluation report.

    Returns:
        The twin's perplexity on the golden references (lower is better).
    """
    import json
    from pathlib import Path

    from twinops.evaluation.evaluate import evaluate as run_evaluation
    from twinops.evaluation.job import EvaluationJob, ModelSpec
    from twinops.models.resolve import resolve_model
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import validate_job

    settings = artifacts.component_settings()

    def spec(name: str, artifact) -> ModelSpec:
        path = artifacts.pointer_path(artifacts.read_pointer(artifact), settings)
        return ModelSpec(name=name, path=str(path))

    models = [spec("twin", model)]
    if compare:
        base = resolve_model(base_model or settings.base_model, settings, setting="base_model")
        models = [ModelSpec(name="base", path=base), spec("sft", sft_model), spec("dpo", dpo_model), *models]
    fields = {
        "models": [spec.model_dump() for spec in models],
        "golden": artifacts.read_pointer(golden)["version_id"],
        "preference": artifacts.read_pointer(preference)["version_id"],
        "reranker_path": str(artifacts.pointer_path(artifacts.read_pointer(reranker_model), settings)),
        "max_questions": max_questions,
        **dict(options),
    }
    result = run_evaluation(validate_job(EvaluationJob, fields), settings)
    twin_scores = next(scored for scored in result.models if scored.name == "twin")
    scores = {f"eval_{key}": value for key, value in twin_scores.metrics.items()}
    scores.update({f"retrieval_{key}": value for key, value in result.retrieval.items()})
    payload = {"metrics": scores, "report": artifacts.summary_dict(result)}
    Path(evaluation.path).parent.mkdir(parents=True, exist_ok=True)
    Path(evaluation.path).write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
    evaluation.metadata.update(
        {
            "report_dir": result.report_dir,
            "golden": result.golden,
            "mlflow_run_id": result.mlflow_run_id,
            "skipped": result.skipped,
        }
    )
    artifacts.log_metrics(metrics, scores)
    html_file = result.files.get("table.html") or result.files.get("html")
    artifacts.copy_report(report, html_file, title="Evaluation", fallback=scores)
    return float(scores.get("eval_perplexity", 0.0))
