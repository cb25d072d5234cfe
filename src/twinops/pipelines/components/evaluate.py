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
    author: str = "",
) -> float:
    """Evaluate the twin, its reranker and the champions they must beat, on the same golden set.

    Scores the quantized twin (on its GPTQ kernels) beside the base model and the current
    champion of the author's twin (``twin-llm``, or ``twin-llm-<author>``) re-scored (with
    ``compare``, the SFT and DPO models too), and ranks every
    golden question's top-k Qdrant candidates by cosine, by the new reranker (``challenger``) and by
    the ``twin-reranker`` champion. Every metric carries a 95% bootstrap interval. The gate reads
    each model's own evidence from here: the twin against the champion (or the base model when there
    is none), the reranker against its champion (or cosine).

    Calls ``twinops.evaluation.evaluate`` (perplexity on the golden references, answers scored
    against them: embedding cosine, ROUGE-L, a style classifier trained on the preference pairs, the
    LLM judge when one is configured). The report is logged to MLflow and copied here as HTML so
    the Kubeflow Pipelines UI shows it next to the scalar metrics.

    Args:
        model: Pointer to the model to evaluate (the quantized twin).
        sft_model: Pointer to the merged SFT model (compared).
        dpo_model: Pointer to the merged DPO model (compared).
        golden: Pointer to the golden DatasetVersion (from ``build_datasets``).
        preference: Pointer to the preference DatasetVersion (trains the style classifier).
        reranker_model: Pointer to the reranker from ``train_reranker``.
        max_questions: Golden questions answered (generation dominates the time); perplexity and
            retrieval use every golden row.
        base_model: The base model reference (empty: the configured TWINOPS_BASE_MODEL).
        compare: Score SFT and DPO beside the twin too (the base model and the champion always are).
        options: Extra ``EvaluationJob`` fields as a mapping (max_new_tokens, judge, retrieval_k,
            device, dtype, batch_size: GPU settings come from here).
        author: The author whose twin this is (empty: the default author's, ``twin-llm``); its
            registered name keys the metrics and the evidence.
        evaluation: JSON with ``metrics`` (each registered model's own ``golden_*`` metrics),
            ``evidence`` (per registered model, the gate's comparison) and the full ``report``.
        metrics: The twin's and the reranker's metrics with their interval bounds.
        report: The HTML evaluation report.

    Returns:
        The twin's golden perplexity (lower is better).
    """
    import json
    import math
    from pathlib import Path

    from twinops.domain.twins import twin_model_name
    from twinops.errors import TwinopsError
    from twinops.evaluation.evaluate import evaluate as run_evaluation
    from twinops.evaluation.job import EvaluationJob, ModelSpec
    from twinops.evaluation.tracking import logged_metrics
    from twinops.infra.registry import RERANKER_MODEL
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import validate_job
    from twinops.pipelines.registry_gate import (
        BASE,
        CHALLENGER_RANKER,
        CHAMPION_COLUMN,
        TWIN,
        evaluation_plan,
        gate_evidence,
    )

    settings = artifacts.component_settings()
    twin = twin_model_name(author)

    def spec(name: str, artifact) -> ModelSpec:
        path = artifacts.pointer_path(artifacts.read_pointer(artifact), settings)
        return ModelSpec(name=name, path=str(path))

    models = [ModelSpec(name=BASE, path=base_model or settings.base_model)]  # evaluate() resolves it
    if compare:
        models += [spec("sft", sft_model), spec("dpo", dpo_model)]
    models.append(spec(TWIN, model))
    fields = {
        "models": [item.model_dump() for item in models],
        "rerankers": [spec(CHALLENGER_RANKER, reranker_model).model_dump()],
        "golden": artifacts.read_pointer(golden)["version_id"],
        "preference": artifacts.read_pointer(preference)["version_id"],
        "max_questions": max_questions,
        **dict(options),
    }
    job = validate_job(EvaluationJob, fields)  # a bad option fails here, before any service is asked
    # The champions are re-scored in this same run: the gate compares like with like.
    plan = evaluation_plan(settings, twin=twin)
    if plan.llm_champion is not None:
        job.models.insert(1, ModelSpec(name=CHAMPION_COLUMN, path=plan.llm_champion.path))
    if plan.reranker_champion is not None:
        job.rerankers.append(ModelSpec(name=CHAMPION_COLUMN, path=plan.reranker_champion.path))
    # A line per stage in the pod's log (and on `twinops run`'s spinner): scoring takes minutes.
    result = run_evaluation(job, settings, step=lambda stage: print(f"evaluating: {stage}", flush=True))
    twin_scores = next(scored for scored in result.models if scored.name == TWIN)
    ranker_scores = next((scored for scored in result.retrieval if scored.name == CHALLENGER_RANKER), None)
    own = {twin: dict(twin_scores.metrics)}
    if ranker_scores is not None:
        own[RERANKER_MODEL] = dict(ranker_scores.metrics)
    proofs = gate_evidence(result, plan, twin=twin)
    evidence = {name: proof.model_dump(mode="json") for name, proof in proofs.items()}
    payload = {"metrics": own, "evidence": evidence, "report": artifacts.summary_dict(result)}
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
    scalars = {f"{twin}.{key}": value for key, value in logged_metrics(twin_scores).items()}
    if ranker_scores is not None:
        scalars.update({f"{RERANKER_MODEL}.{k}": v for k, v in logged_metrics(ranker_scores).items()})
    artifacts.log_metrics(metrics, scalars)
    html_file = result.files.get("table.html") or result.files.get("html")
    artifacts.copy_report(report, html_file, title="Evaluation", fallback=scalars)
    perplexity = twin_scores.metrics.get("golden_perplexity", math.nan)
    if math.isnan(perplexity):
        raise TwinopsError(
            "the evaluation measured no golden perplexity for the twin: rebuild the golden set"
        )
    return float(perplexity)
