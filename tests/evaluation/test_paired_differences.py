"""Issue 26, item 4: each model against the base, as the paired bootstrap interval of the difference
over the same held-out texts (perplexity) and questions (style), in the report, MLflow and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.evaluation.evaluate import compare_with_baseline, with_intervals
from twinops.evaluation.job import EvaluationJob, EvaluationReport, ModelScores, ModelSpec
from twinops.evaluation.report import markdown_table
from twinops.evaluation.tracking import logged_metrics

# Per-text log-perplexities of the base on 12 held-out texts: some texts are far harder than others.
BASE_LOG_PPL = [3.1, 4.6, 2.4, 5.2, 3.8, 2.9, 4.9, 3.3, 2.2, 5.6, 4.1, 3.5]
BASE_STYLE = [0.2, 0.4, 0.3, 0.1, 0.5, 0.35, 0.25, 0.45, 0.3, 0.2, 0.4, 0.3]


def _scores(name: str, log_ppl: list[float], style: list[float]) -> ModelScores:
    return with_intervals(
        ModelScores(
            name=name,
            path=f"/models/{name}",
            per_question={"golden_perplexity": log_ppl, "golden_style_score": style},
        )
    )


def test_lower_on_every_text_is_beyond_noise_though_the_intervals_overlap() -> None:
    base = _scores("base", BASE_LOG_PPL, BASE_STYLE)
    # 4% lower perplexity on every text (log: -0.04), and a little more author-like on every answer.
    twin = _scores("twin", [v - 0.04 for v in BASE_LOG_PPL], [v + 0.05 for v in BASE_STYLE])
    same = _scores("copy", list(BASE_LOG_PPL), list(BASE_STYLE))
    compare_with_baseline([base, twin, same], "base")

    assert base.compared_with is None and base.difference == {}
    low, high = twin.difference_ci["golden_perplexity"]
    assert low < high < 0, "lower on every text: the paired interval excludes 0"
    assert twin.difference["golden_perplexity"] == pytest.approx(
        twin.metrics["golden_perplexity"] - base.metrics["golden_perplexity"]
    )
    # Each model's own interval overlaps the other's: only the paired one tells them apart.
    assert twin.intervals["golden_perplexity"][1] > base.intervals["golden_perplexity"][0]
    style_low, _ = twin.difference_ci["golden_style_score"]
    assert style_low > 0 and twin.compared_with == "base"
    # Identical scores: a difference of exactly nothing, an interval containing 0.
    for metric in ("golden_perplexity", "golden_style_score"):
        low, high = same.difference_ci[metric]
        assert low <= 0 <= high


def test_noise_around_the_base_gives_an_interval_across_zero() -> None:
    base = _scores("base", BASE_LOG_PPL, BASE_STYLE)
    # Better on half the texts, worse on the other half, by the same amounts.
    shaken = [v + (0.3 if n % 2 else -0.3) for n, v in enumerate(BASE_LOG_PPL)]
    noisy = _scores("noisy", shaken, BASE_STYLE)
    compare_with_baseline([base, noisy], "base")
    low, high = noisy.difference_ci["golden_perplexity"]
    assert low < 0 < high


def test_metrics_measured_on_other_texts_are_not_paired() -> None:
    base = _scores("base", BASE_LOG_PPL, BASE_STYLE)
    other = _scores("other", BASE_LOG_PPL[:5], BASE_STYLE)
    compare_with_baseline([base, other], "base")
    assert "golden_perplexity" not in other.difference_ci and "golden_style_score" in other.difference_ci


def test_the_report_mlflow_and_the_job_carry_the_differences(tmp_path: Path) -> None:
    base = _scores("base", BASE_LOG_PPL, BASE_STYLE)
    twin = _scores("twin", [v - 0.04 for v in BASE_LOG_PPL], [v + 0.05 for v in BASE_STYLE])
    compare_with_baseline([base, twin], "base")
    report = EvaluationReport(
        report_dir=str(tmp_path), golden="g", questions=12, models=[base, twin], judge="-"
    )
    table = markdown_table(report)
    assert "## Against base: difference, paired 95% bootstrap interval" in table
    differences = table.split("## Against base")[1]
    twin_row = next(line for line in differences.splitlines() if line.startswith("| twin |"))
    low, high = twin.difference_ci["golden_perplexity"]
    delta = twin.difference["golden_perplexity"]
    assert twin_row.startswith(f"| twin | {delta:.3g} [{low:.3g}, {high:.3g}] |")

    logged = logged_metrics(twin)
    assert logged["golden_perplexity_delta_ci_high"] == high < 0
    assert "golden_perplexity_delta" not in logged_metrics(base)
    # Round trip through report.json, as the gate's evidence reads it.
    again = ModelScores.model_validate(json.loads(twin.model_dump_json()))
    assert again.difference_ci["golden_perplexity"] == (low, high)

    models = [ModelSpec(name="base", path="b"), ModelSpec(name="twin", path="t")]
    assert EvaluationJob(models=models).baseline_name() == "base"
    assert EvaluationJob(models=models, baseline="twin").baseline_name() == "twin"
    with pytest.raises(ValueError, match="baseline 'nope' is not one of the models"):
        EvaluationJob(models=models, baseline="nope")


def test_the_style_classifier_learns_from_the_base_models_own_answers(eval_settings, tmp_path: Path) -> None:
    from twinops.evaluation.data import load_preference_pairs

    def row(chosen: str, rejected: str, source: str) -> dict:
        return {
            "prompt": [{"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "document_id": "d",
            "source": "template",
            "rejected_source": source,
        }

    rows = [row(f"author {n}", f"model {n}", "generator") for n in range(5)]
    rows += [row(f"author t{n}", "Great question. In general...", "template") for n in range(20)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    author, base, _ = load_preference_pairs(str(tmp_path), eval_settings)
    assert len(author) == 25 and base == [f"model {n}" for n in range(5)]
    # Too few of the model's own answers: the templates' are all there is.
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    _, base, _ = load_preference_pairs(str(tmp_path), eval_settings)
    assert len(base) == 22
