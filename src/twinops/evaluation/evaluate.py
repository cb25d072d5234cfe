"""``evaluate(job, settings)``: every model on the same golden questions, one table.

Per model: perplexity on the held-out author texts (the golden references), greedy answers to the
golden questions scored against the references (MiniLM cosine, ROUGE-L), a style score (P(author)
from a classifier trained on the preference set) and, when configured, an LLM judge's accuracy and
style (1-3). Once: retrieval hit@k/MRR with and without the reranker.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from twinops.errors import TwinopsError
from twinops.evaluation.data import GoldenRow, load_golden, load_preference_pairs
from twinops.evaluation.job import EvaluationJob, EvaluationReport, ModelScores
from twinops.evaluation.metrics import embedding_cosine, mean, rouge_l
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


def _judge_scores(judge, rows: list[GoldenRow], answers: list[str]) -> dict[str, float]:
    scored = [
        judge.score(row.instruction, row.reference, answer) for row, answer in zip(rows, answers, strict=True)
    ]
    valid = [score for score in scored if score is not None]
    return {
        "judge_accuracy": mean([float(a) for a, _ in valid]),
        "judge_style": mean([float(s) for _, s in valid]),
        "judge_answered": float(len(valid)) / max(1, len(scored)),
    }


def _score_model(
    *,
    name: str,
    reference: str,
    rows: list[GoldenRow],
    job: EvaluationJob,
    settings: Settings,
    embedder,
    style,
    judge,
    folder: Path,
    step: Step,
) -> ModelScores:
    from twinops.evaluation.generation import generate_answers, load_for_evaluation
    from twinops.evaluation.perplexity import perplexity

    step(f"{name}: loading")
    model, tokenizer = load_for_evaluation(reference, settings)
    references = [row.reference for row in rows]
    step(f"{name}: perplexity")
    metrics = {"perplexity": perplexity(model, tokenizer, references, max_length=job.max_length)}
    step(f"{name}: answering {len(rows)} questions")
    answers = generate_answers(
        model, tokenizer, [row.instruction for row in rows], max_new_tokens=job.max_new_tokens
    )
    del model
    gc.collect()
    cosine = embedding_cosine(embedder, answers, references)
    rouge = rouge_l(answers, references)
    metrics["answer_cosine"] = mean(cosine)
    metrics["rouge_l"] = mean(rouge)
    style_scores = style.author_probability(answers) if style else []
    if style:
        metrics["style_score"] = mean(style_scores)
    if judge:
        step(f"{name}: asking the judge")
        metrics.update(_judge_scores(judge, rows, answers))
    answers_dir = folder / "answers"
    answers_dir.mkdir(parents=True, exist_ok=True)
    with (answers_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
        for index, (row, answer) in enumerate(zip(rows, answers, strict=True)):
            record = {
                "instruction": row.instruction,
                "reference": row.reference,
                "answer": answer,
                "cosine": cosine[index],
                "rouge_l": rouge[index],
            }
            if style_scores:
                record["style_score"] = style_scores[index]
            handle.write(json.dumps(record) + "\n")
    return ModelScores(name=name, path=reference, metrics=metrics)


def evaluate(job: EvaluationJob, settings: Settings, *, step: Step | None = None) -> EvaluationReport:
    """Run the evaluation described in the module docstring; write and track the report."""
    from twinops.evaluation.judge import Judge, judge_status
    from twinops.evaluation.report import write_report
    from twinops.evaluation.retrieval import retrieval_metrics
    from twinops.models.loaders import load_embedder

    step = step or (lambda _: None)
    # Every model reference is checked before any work, so a typo costs nothing.
    resolved = {
        spec.name: resolve_model(
            _under_home(spec.path, settings), settings, setting=f"--model {spec.name}=PATH"
        )
        for spec in job.models
    }
    rows, golden_label = load_golden(job.golden, settings, job.max_questions)
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
                rows=rows,
                job=job,
                settings=settings,
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
    retrieval: dict[str, float] = {}
    if job.retrieval:
        step("retrieval metrics")
        measured = retrieval_metrics(
            settings,
            rows,
            k=job.retrieval_k,
            candidates=job.rerank_candidates,
            reranker_path=job.reranker_path,
            author_id=job.author_id,
        )
        if measured is None:
            skipped.append(
                "retrieval: no `twin_chunks` collection in Qdrant or no chunk_id in the golden set"
            )
        else:
            retrieval = measured
            if not job.reranker_path:
                skipped.append("reranked retrieval: no reranker given (--reranker)")
    report = EvaluationReport(
        report_dir=str(folder),
        golden=golden_label,
        questions=len(rows),
        models=models,
        retrieval=retrieval,
        judge=f"used {settings.judge_model} at {settings.judge_url}" if reason is None else reason,
        style_classifier={"held_out_accuracy": style.held_out_accuracy, "trained_on": style.trained_on}
        if style
        else {},
        skipped=skipped,
    )
    report.files = write_report(report, folder)
    if job.track:
        step("logging to MLflow")
        parent, children = log_evaluation_runs(report, folder, settings)
        report.mlflow_run_id = parent
        for scores in report.models:
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
