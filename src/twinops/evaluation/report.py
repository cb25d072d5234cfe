"""The comparison as Markdown, HTML and PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from twinops.evaluation.job import EvaluationReport, ModelScores

# Column order and how each metric reads; unknown metrics follow in name order.
METRIC_LABELS = {
    "perplexity": "Perplexity (lower is better)",
    "answer_cosine": "Answer cosine to reference",
    "rouge_l": "ROUGE-L F1",
    "style_score": "Style: P(author)",
    "judge_accuracy": "Judge accuracy (1-3)",
    "judge_style": "Judge style (1-3)",
}


def _metric_names(models: list[ModelScores]) -> list[str]:
    present = {name for model in models for name in model.metrics}
    return [name for name in METRIC_LABELS if name in present] + sorted(present - set(METRIC_LABELS))


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def markdown_table(report: EvaluationReport) -> str:
    names = _metric_names(report.models)
    lines = [
        f"# Evaluation on golden set {report.golden} ({report.questions} questions)",
        "",
        "| model | " + " | ".join(METRIC_LABELS.get(n, n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    lines += [
        f"| {m.name} | " + " | ".join(_cell(m.metrics.get(n)) for n in names) + " |" for m in report.models
    ]
    if report.retrieval:
        lines += ["", "## Retrieval", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in report.retrieval.items()]
    lines += ["", f"- LLM judge: {report.judge}"]
    lines += [f"- Skipped: {item}" for item in report.skipped]
    return "\n".join(lines) + "\n"


def html_table(report: EvaluationReport, plots: list[str]) -> str:
    names = _metric_names(report.models)
    head = "".join(f"<th>{html.escape(METRIC_LABELS.get(n, n))}</th>" for n in names)
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td>"
        + "".join(f"<td>{_cell(m.metrics.get(n))}</td>" for n in names)
        + "</tr>"
        for m in report.models
    )
    retrieval = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_cell(v)}</td></tr>" for k, v in report.retrieval.items()
    )
    images = "".join(
        f'<img src="{html.escape(p)}" alt="{html.escape(p)}" style="max-width:48%">' for p in plots
    )
    notes = "".join(
        f"<li>{html.escape(item)}</li>" for item in [f"LLM judge: {report.judge}", *report.skipped]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>twinops evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child{text-align:left}</style>"
        f"</head><body><h1>Evaluation on golden set {html.escape(report.golden)}</h1>"
        f"<p>{report.questions} questions</p>"
        f"<table id='comparison'><thead><tr><th>model</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        + (f"<h2>Retrieval</h2><table id='retrieval'>{retrieval}</table>" if retrieval else "")
        + f"<ul>{notes}</ul>{images}</body></html>"
    )


def plot_metrics(report: EvaluationReport, folder: Path) -> list[str]:
    """One bar chart per metric (models side by side); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for name in _metric_names(report.models):
        values = [m.metrics.get(name, float("nan")) for m in report.models]
        if all(math.isnan(v) for v in values):
            continue
        figure, axis = plt.subplots(figsize=(5, 3.2))
        axis.bar([m.name for m in report.models], values, color="#2f6db5")
        axis.set_title(METRIC_LABELS.get(name, name))
        figure.tight_layout()
        file = f"{name}.png"
        figure.savefig(folder / file, dpi=100)
        plt.close(figure)
        files.append(file)
    if report.retrieval:
        keys = [k for k in report.retrieval if k != "questions"]
        figure, axis = plt.subplots(figsize=(5, 3.2))
        axis.bar(keys, [report.retrieval[k] for k in keys], color="#5a9e47")
        axis.set_ylim(0, 1)
        axis.set_title("Retrieval (golden questions)")
        axis.tick_params(axis="x", labelrotation=20)
        figure.tight_layout()
        figure.savefig(folder / "retrieval.png", dpi=100)
        plt.close(figure)
        files.append("retrieval.png")
    return files


def write_report(report: EvaluationReport, folder: Path) -> dict[str, str]:
    """table.md, table.html, report.json and the plots under ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = plot_metrics(report, folder)
    (folder / "table.md").write_text(markdown_table(report), encoding="utf-8")
    (folder / "table.html").write_text(html_table(report, plots), encoding="utf-8")
    files = {"table.md": str(folder / "table.md"), "table.html": str(folder / "table.html")}
    files.update({plot: str(folder / plot) for plot in plots})
    return files
