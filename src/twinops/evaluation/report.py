"""The comparison as Markdown, HTML and PNG plots (matplotlib, Agg backend: no display needed).

Every cell is the value with its 95% bootstrap interval, ``0.733 [0.62, 0.84]``; the plots draw
the interval as an error bar. A second table gives each model's difference from the baseline (the
base model) with its paired interval: an interval clear of 0 is a difference beyond noise.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

from twinops.domain.stats import format_interval
from twinops.evaluation.job import EvaluationReport, ModelScores

# Column order and how each metric reads; unknown metrics follow in name order.
METRIC_LABELS = {
    "golden_perplexity": "Perplexity (lower is better)",
    "golden_answer_cosine": "Answer cosine to reference",
    "golden_rouge_l": "ROUGE-L F1",
    "golden_style_score": "Style: P(author)",
    "golden_judge_accuracy": "Judge accuracy (1-3)",
    "golden_judge_style": "Judge style (1-3)",
    "golden_judge_answered": "Judge answered",
    "golden_hit_at_5": "hit@5",
    "golden_mrr": "MRR",
    "golden_paraphrased_hit_at_5": "hit@5, paraphrased",
    "golden_paraphrased_mrr": "MRR, paraphrased",
}


def _metric_names(models: list[ModelScores]) -> list[str]:
    present = {name for model in models for name in model.metrics}
    return [name for name in METRIC_LABELS if name in present] + sorted(present - set(METRIC_LABELS))


def cell(scores: ModelScores, metric: str) -> str:
    return format_interval(scores.metrics.get(metric), scores.intervals.get(metric))


def _rows(models: list[ModelScores], names: list[str]) -> list[str]:
    return [f"| {m.name} | " + " | ".join(cell(m, n) for n in names) + " |" for m in models]


def difference_cell(scores: ModelScores, metric: str) -> str:
    """``-2.1 [-3.4, -0.9]``: the difference from the baseline and its paired interval."""
    return format_interval(scores.difference.get(metric), scores.difference_ci.get(metric))


def _compared(report: EvaluationReport) -> tuple[str | None, list[ModelScores], list[str]]:
    """(the baseline, the models compared with it, the metrics they differ on), in table order."""
    compared = [m for m in report.models if m.compared_with]
    present = {name for m in compared for name in m.difference}
    names = [name for name in _metric_names(report.models) if name in present]
    return (compared[0].compared_with if compared else None), compared, names


def _difference_lines(report: EvaluationReport) -> list[str]:
    baseline, compared, names = _compared(report)
    if not compared or not names:
        return []
    return [
        "",
        f"## Against {baseline}: difference, paired 95% bootstrap interval",
        "",
        "Same held-out texts (perplexity) and questions for both; an interval clear of 0 is beyond noise.",
        "",
        "| model | " + " | ".join(f"Δ {METRIC_LABELS.get(n, n)}" for n in names) + " |",
        "|---|" + "---|" * len(names),
        *[f"| {m.name} | " + " | ".join(difference_cell(m, n) for n in names) + " |" for m in compared],
    ]


def _notes(report: EvaluationReport) -> list[str]:
    notes = [f"LLM judge: {report.judge}", f"device: {report.device}"]
    for scores in [*report.models, *report.retrieval]:
        timing = f"{scores.seconds:.0f} s" if scores.seconds is not None else "-"
        backend = f", {scores.backend}" if scores.backend else ""
        notes.append(f"{scores.name}: {timing}{backend}")
        notes += [f"{scores.name}: {note}" for note in scores.notes]
    return notes + [f"Skipped: {item}" for item in report.skipped]


def markdown_table(report: EvaluationReport) -> str:
    names = _metric_names(report.models)
    lines = [
        f"# Evaluation on golden set {report.golden}",
        "",
        f"{report.questions} golden rows (perplexity, retrieval); {report.answered} questions answered. "
        "Each cell: value [95% bootstrap interval].",
        "",
    ]
    if report.models:
        lines += [
            "| model | " + " | ".join(METRIC_LABELS.get(n, n) for n in names) + " |",
            "|---|" + "---|" * len(names),
            *_rows(report.models, names),
        ]
        lines += _difference_lines(report)
    if report.retrieval:
        ranked = _metric_names(report.retrieval)
        lines += ["", "## Retrieval (top-k Qdrant candidates, reranked)", ""]
        lines += [
            "| ranker | " + " | ".join(METRIC_LABELS.get(n, n) for n in ranked) + " |",
            "|---|" + "---|" * len(ranked),
            *_rows(report.retrieval, ranked),
        ]
    lines += [""] + [f"- {note}" for note in _notes(report)]
    return "\n".join(lines) + "\n"


def _html_table(
    table_id: str,
    first: str,
    models: list[ModelScores],
    names: list[str] | None = None,
    *,
    value: Callable[[ModelScores, str], str] = cell,
    prefix: str = "",
) -> str:
    names = _metric_names(models) if names is None else names
    head = "".join(f"<th>{html.escape(prefix + METRIC_LABELS.get(n, n))}</th>" for n in names)
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td>"
        + "".join(f"<td>{html.escape(value(m, n))}</td>" for n in names)
        + "</tr>"
        for m in models
    )
    return (
        f"<table id='{table_id}'><thead><tr><th>{first}</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def _html_differences(report: EvaluationReport) -> str:
    baseline, compared, names = _compared(report)
    if not compared or not names:
        return ""
    return f"<h2>Against {html.escape(baseline or '')}: difference, paired 95% bootstrap interval</h2>" + (
        _html_table("differences", "model", compared, names, value=difference_cell, prefix="Δ ")
    )


def html_table(report: EvaluationReport, plots: list[str]) -> str:
    images = "".join(
        f'<img src="{html.escape(p)}" alt="{html.escape(p)}" style="max-width:48%">' for p in plots
    )
    notes = "".join(f"<li>{html.escape(item)}</li>" for item in _notes(report))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>twinops evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child{text-align:left}</style>"
        f"</head><body><h1>Evaluation on golden set {html.escape(report.golden)}</h1>"
        f"<p>{report.questions} golden rows (perplexity, retrieval); {report.answered} questions answered. "
        "Each cell: value [95% bootstrap interval].</p>"
        + (_html_table("comparison", "model", report.models) if report.models else "")
        + _html_differences(report)
        + (
            "<h2>Retrieval</h2>" + _html_table("retrieval", "ranker", report.retrieval)
            if report.retrieval
            else ""
        )
        + f"<ul>{notes}</ul>{images}</body></html>"
    )


def _bar_chart(models: list[ModelScores], metric: str, path: Path, color: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [m.metrics.get(metric, math.nan) for m in models]
    if all(math.isnan(v) for v in values):
        return False
    errors = [
        [
            max(0.0, v - m.intervals.get(metric, (v, v))[0]) if not math.isnan(v) else 0.0
            for v, m in zip(values, models, strict=True)
        ],
        [
            max(0.0, m.intervals.get(metric, (v, v))[1] - v) if not math.isnan(v) else 0.0
            for v, m in zip(values, models, strict=True)
        ],
    ]
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.bar([m.name for m in models], values, yerr=errors, capsize=4, color=color)
    axis.set_title(f"{METRIC_LABELS.get(metric, metric)} (95% CI)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_metrics(report: EvaluationReport, folder: Path) -> list[str]:
    """One bar chart per metric (models or rankers side by side, interval bars); returns file names."""
    files = []
    for models, color in ((report.models, "#2f6db5"), (report.retrieval, "#5a9e47")):
        for name in _metric_names(models):
            file = f"{name}.png"
            if _bar_chart(models, name, folder / file, color):
                files.append(file)
    return files


def write_report(report: EvaluationReport, folder: Path) -> dict[str, str]:
    """table.md, table.html and the plots under ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = plot_metrics(report, folder)
    (folder / "table.md").write_text(markdown_table(report), encoding="utf-8")
    (folder / "table.html").write_text(html_table(report, plots), encoding="utf-8")
    files = {"table.md": str(folder / "table.md"), "table.html": str(folder / "table.html")}
    files.update({plot: str(folder / plot) for plot in plots})
    return files
