"""``evaluate(job, settings)``: every model on the same golden questions, one table, with intervals.

Per model (each metric named once, ``golden_*``, in the report, MLflow and the registry alike):

- ``golden_perplexity``: on the held-out author texts (the golden references, each once);
- ``golden_answer_cosine``, ``golden_rouge_l``: greedy answers to the golden instructions (the
  first ``max_questions``) against the references; ``golden_style_score``: P(author) from a
  classifier trained on the preference set; with a judge, ``golden_judge_accuracy`` and
  ``golden_judge_style`` (1-3) and ``golden_judge_answered``.

Each model but the baseline (``EvaluationJob.baseline``, default the first: the base model) also
carries, per metric, its difference from the baseline and the paired 95% bootstrap interval of that
difference, over the same held-out texts (perplexity) or questions (``compare_with_baseline``).

Per ranker, on every golden row: ``golden_hit_at_{k}`` and ``golden_mrr`` of cosine order and of
each reranker over the same top-k Qdrant lists. Every metric carries its bootstrap interval and
per-question values, so two models can be compared pairwise (``twinops.domain.stats``). Models
load as they will be served (a GPTQ folder on its kernels, on CUDA when present).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from twinops.domain.stats import interval, paired_difference_interval, value
from twinops.errors import ConfigError, TwinopsError
from twinops.evaluation.data import GoldenRow, load_golden, load_preference_pairs
from twinops.evaluation.job import EvaluationJob, EvaluationReport, ModelScores
from twinops.evaluation.metrics import embedding_cosine, rouge_l
from twinops.models.resolve import resolve_model
from twinops.settings import Settings

Step = Callable[[str], None]


def _style_classifier(job: EvaluationJob, settings: Settings, embedder, skipped: list[str]):
    from twinops.evaluation.style import StyleClassifier

    if not job.preference:
        skipped.append("style score: no preference set in the job")
        return None
    try:
        author, base, _ = load_preference_pairs(job.preference, settings)
        return StyleClassifier.fit(embedder, author, base)
    except TwinopsError as error:  # no preference set (or no MongoDB to find it): say so, go on
        skipped.append(f"style score: {error}")
        return None


def _judge_values(judge, rows: list[GoldenRow], answers: list[str]) -> dict[str, list[float]]:
    scored = [
        judge.score(row.instruction, row.reference, answer) for row, answer in zip(rows, answers, strict=True)
    ]
    valid = [score for score in scored if score is not None]
    return {
        "golden_judge_accuracy": [float(a) for a, _ in valid],
        "golden_judge_style": [float(s) for _, s in valid],
        "golden_judge_answered": [0.0 if score is None else 1.0 for score in scored],
    }


def generation_rows(rows: list[GoldenRow], limit: int) -> list[GoldenRow]:
    """The rows the models answer: the generator's instructions first, then probes, ``limit`` in all."""
    ordered = [row for row in rows if row.origin != "probe"] + [row for row in rows if row.origin == "probe"]
    return ordered[:limit]


def unique_references(rows: list[GoldenRow]) -> list[str]:
    """Each golden reference once (several questions share a chunk), in golden order."""
    return list(dict.fromkeys(row.reference for row in rows))


def with_intervals(scores: ModelScores) -> ModelScores:
    """Fill ``metrics`` and ``intervals`` from ``per_question``."""
    for metric, values in scores.per_question.items():
        scores.metrics[metric] = value(metric, values)
        scores.intervals[metric] = interval(metric, values)
    return scores


def compare_with_baseline(models: list[ModelScores], baseline: str) -> None:
    """Fill each other model's ``difference`` and ``difference_ci`` against ``baseline``, for every
    metric both measured on the same texts or questions (per-text perplexity, per-answer style...).

    The paired bootstrap resamples the texts once for both models, so a model whose perplexity is
    lower on nearly every text has an interval clear of zero even when the two models' own
    intervals overlap: this is what tells an improvement from noise.
    """
    reference = next((scores for scores in models if scores.name == baseline), None)
    if reference is None:
        return
    for scores in models:
        if scores is reference:
            continue
        scores.compared_with = baseline
        for metric, values in scores.per_question.items():
            base_values = reference.per_question.get(metric)
            if not base_values or len(base_values) != len(values):
                continue
            scores.difference[metric] = value(metric, values) - value(metric, base_values)
            scores.difference_ci[metric] = paired_difference_interval(metric, base_values, values)


def _score_model(
    *,
    name: str,
    reference: str,
    rows: list[GoldenRow],
    texts: list[str],
    job: EvaluationJob,
    embedder,
    style,
    judge,
    folder: Path,
    step: Step,
) -> ModelScores:
    from twinops.evaluation.generation import generate_answers, load_for_evaluation
    from twinops.models.perplexity import log_perplexities

    started = time.perf_counter()
    step(f"{name}: loading")
    loaded = load_for_evaluation(reference, device=job.device, dtype=job.dtype)
    scores = ModelScores(name=name, path=reference, backend=loaded.backend)
    step(f"{name}: perplexity of {len(texts)} texts")
    per_question = {
        "golden_perplexity": log_perplexities(
            loaded.model, loaded.tokenizer, texts, max_length=job.max_length
        )
    }
    step(f"{name}: answering {len(rows)} questions")
    answers = generate_answers(
        loaded.model,
        loaded.tokenizer,
        [row.instruction for row in rows],
        max_new_tokens=job.max_new_tokens,
        batch_size=job.batch_size,
    )
    del loaded
    gc.collect()
    if scores.backend == "gptq-kernels":
        step(f"{name}: checking the kernels against the dequantized copy")
        scores.notes.append(_gptq_agreement(reference, texts, per_question["golden_perplexity"], job))
    references = [row.reference for row in rows]
    per_question["golden_answer_cosine"] = embedding_cosine(embedder, answers, references)
    per_question["golden_rouge_l"] = rouge_l(answers, references)
    if style:
        per_question["golden_style_score"] = style.author_probability(answers)
    if judge:
        step(f"{name}: asking the judge")
        per_question.update(_judge_values(judge, rows, answers))
    scores.per_question = per_question
    with_intervals(scores)
    _write_answers(folder / "answers" / f"{name}.jsonl", rows, answers, per_question)
    scores.seconds = time.perf_counter() - started
    return scores


def _gptq_agreement(reference: str, texts: list[str], kernel_values: list[float], job: EvaluationJob) -> str:
    """One line for the report: the kernels' perplexity agrees with the dequantized float copy's.

    Beyond ``job.gptq_tolerance`` the kernels do not compute the folder's weights, so the scores
    would belong to neither model: the evaluation fails with one ``ConfigError`` line instead.
    """
    from twinops.evaluation.generation import load_dequantized
    from twinops.models.perplexity import log_perplexities

    model, tokenizer = load_dequantized(reference)
    float_values = log_perplexities(model, tokenizer, texts, max_length=job.max_length)
    del model
    gc.collect()
    kernels = value("golden_perplexity", kernel_values)
    dequantized = value("golden_perplexity", float_values)
    gap = abs(kernels - dequantized) / dequantized
    comparison = (
        f"perplexity {kernels:.4g} on the kernels vs {dequantized:.4g} on the dequantized copy "
        f"({gap:.2%} apart, tolerance {job.gptq_tolerance:.0%})"
    )
    if gap > job.gptq_tolerance:
        raise ConfigError(
            f"the GPTQ model {reference} does not compute its own weights on the GPTQ kernels: "
            f"{comparison}; re-run `twinops quantize`, or check the gptqmodel install"
        )
    return f"GPTQ kernels and the dequantized copy agree: {comparison}"


def _write_answers(path: Path, rows: list[GoldenRow], answers: list[str], per_question: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    per_answer = {
        k: v for k, v in per_question.items() if len(v) == len(answers) and k != "golden_perplexity"
    }
    with path.open("w", encoding="utf-8") as handle:
        for index, (row, answer) in enumerate(zip(rows, answers, strict=True)):
            record = {"instruction": row.instruction, "reference": row.reference, "answer": answer}
            record.update({metric: values[index] for metric, values in per_answer.items()})
            handle.write(json.dumps(record) + "\n")


def evaluate(job: EvaluationJob, settings: Settings, *, step: Step | None = None) -> EvaluationReport:
    """Run the evaluation described in the module docstring; write and track the report."""
    from twinops.evaluation.judge import Judge, judge_status
    from twinops.evaluation.report import write_report
    from twinops.evaluation.retrieval import retrieval_scores
    from twinops.models.loaders import load_embedder
    from twinops.models.rerank import pick_device

    step = step or (lambda _: None)
    # Every model reference is checked before any work, so a typo costs nothing.
    resolved = {
        spec.name: resolve_model(
            _under_home(spec.path, settings), settings, setting=f"--model {spec.name}=PATH"
        )
        for spec in job.models
    }
    rerankers = {
        spec.name: resolve_model(_under_home(spec.path, settings), settings, setting=f"reranker {spec.name}")
        for spec in job.named_rerankers()
    }
    device = pick_device(job.device)
    rows, golden_label = load_golden(job.golden, settings)
    answered = generation_rows(rows, job.max_questions)
    texts = unique_references(rows)
    folder = job.output_dir or settings.reports_dir / "evaluation" / datetime.now(UTC).strftime(
        "%Y%m%dT%H%M%SZ"
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    embedder = load_embedder(settings)
    step("training the style classifier")
    style = _style_classifier(job, settings, embedder, skipped)
    reason = judge_status(settings) if job.judge else "skipped: switched off in the job"
    judge = Judge(settings) if reason is None else None
    try:
        models = [
            _score_model(
                name=name,
                reference=path,
                rows=answered,
                texts=texts,
                job=job,
                embedder=embedder,
                style=style,
                judge=judge,
                folder=folder,
                step=step,
            )
            for name, path in resolved.items()
        ]
    finally:
        if judge:
            judge.close()
    compare_with_baseline(models, job.baseline_name())
    retrieval: list[ModelScores] = []
    if job.retrieval:
        step("retrieval metrics")
        measured = retrieval_scores(
            settings,
            rows,
            rerankers,
            k=job.retrieval_k,
            candidates=job.rerank_candidates,
            author_id=job.author_id,
            device=job.device,
        )
        if measured is None:
            skipped.append(
                "retrieval: no `twin_chunks` collection in Qdrant or no chunk_id in the golden set"
            )
        else:
            retrieval = measured
            if not rerankers:
                skipped.append("reranked retrieval: no reranker given (--reranker)")
            if not any(row.paraphrased for row in rows):
                skipped.append(
                    "paraphrased retrieval (golden_paraphrased_*): the golden set has no question in "
                    "the asker's own words; build it with the dataset option paraphrased_questions"
                )
    report = EvaluationReport(
        report_dir=str(folder),
        golden=golden_label,
        questions=len(rows),
        answered=len(answered),
        models=models,
        retrieval=retrieval,
        judge=f"used {settings.judge_model} at {settings.judge_url}" if reason is None else reason,
        style_classifier={"held_out_accuracy": style.held_out_accuracy, "trained_on": style.trained_on}
        if style
        else {},
        device=device,
        skipped=skipped,
    )
    report.files = write_report(report, folder)
    if job.track:
        step("logging to MLflow")
        parent, children = log_evaluation_runs(report, folder, settings)
        report.mlflow_run_id = parent
        for scores in [*report.models, *report.retrieval]:
            scores.mlflow_run_id = children.get(scores.name)
    (folder / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return report


def log_evaluation_runs(report: EvaluationReport, folder: Path, settings: Settings):
    from twinops.evaluation.tracking import log_evaluation

    return log_evaluation(report, folder, settings)


def _under_home(reference: str, settings: Settings) -> str:
    """A relative run path such as ``runs/sft/r1/merged`` may be meant under TWINOPS_HOME."""
    path = Path(reference).expanduser()
    if not path.is_absolute() and not path.exists() and (settings.home / path).exists():
        return str(settings.home / path)
    return reference
