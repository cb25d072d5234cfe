"""The evaluate step's plan and the gate evidence it hands register-and-gate: like with like."""

from __future__ import annotations

import math

from twinops.evaluation.evaluate import with_intervals
from twinops.evaluation.job import EvaluationReport, ModelScores
from twinops.pipelines.registry_gate import ChampionRef, EvaluationPlan, gate_evidence
from twinops.training.gate import judge, load_gate


def _scores(name: str, per_question: dict[str, list[float]]) -> ModelScores:
    return with_intervals(ModelScores(name=name, path=f"/models/{name}", per_question=per_question))


def _report(models: list[ModelScores], rankers: list[ModelScores]) -> EvaluationReport:
    return EvaluationReport(
        report_dir="/reports/e1", golden="golden-1", questions=60, models=models, retrieval=rankers, judge="-"
    )


def _ranker(name: str, ranks: list[int], paraphrased: int = 12) -> ModelScores:
    """Scores of a ranker; its first ``paraphrased`` questions are the paraphrased subset."""
    return _scores(
        name,
        {
            "golden_hit_at_5": [1.0 if r <= 5 else 0.0 for r in ranks],
            "golden_mrr": [1.0 / r for r in ranks],
            "golden_paraphrased_hit_at_5": [1.0 if r <= 5 else 0.0 for r in ranks[:paraphrased]],
            "golden_paraphrased_mrr": [1.0 / r for r in ranks[:paraphrased]],
        },
    )


def test_without_champions_each_model_faces_its_baseline() -> None:
    logs = [math.log(20.0 + i % 7) for i in range(60)]
    base = _scores("base", {"golden_perplexity": logs, "golden_style_score": [0.3] * 60})
    twin = _scores("twin", {"golden_perplexity": [v - 0.2 for v in logs], "golden_style_score": [0.6] * 60})
    cosine = _ranker("cosine", [1, 2, 3, 1, 6, 2] * 10)
    better = _ranker("challenger", [1, 1, 2, 1, 3, 1] * 10)
    evidence = gate_evidence(_report([base, twin], [cosine, better]), EvaluationPlan())

    llm, ranker = evidence["twin-llm"], evidence["twin-reranker"]
    assert llm.reference_name == "base" and llm.reference_version is None
    assert llm.challenger["golden_perplexity"] < llm.reference["golden_perplexity"]
    # Perplexity fell on every text: the whole interval of the difference lies below zero.
    assert llm.improvement_ci["golden_perplexity"][1] < 0
    assert ranker.reference_name == "cosine" and ranker.improvement_ci["golden_mrr"][0] > 0
    # The project's gates pass both on this evidence, and refuse them the other way round.
    assert judge(load_gate(None, "twin-llm"), llm)[0] and judge(load_gate(None, "twin-reranker"), ranker)[0]
    worse = _report(
        [base, twin],
        [_ranker("cosine", [1, 1, 2, 1, 3, 1] * 10), _ranker("challenger", [1, 2, 3, 1, 6, 2] * 10)],
    )
    assert not judge(
        load_gate(None, "twin-reranker"), gate_evidence(worse, EvaluationPlan())["twin-reranker"]
    )[0]


def test_with_champions_the_reference_is_the_champion_rescored() -> None:
    logs = [math.log(20.0)] * 10
    plan = EvaluationPlan(
        llm_champion=ChampionRef(version="3", path="/m/3"),
        reranker_champion=ChampionRef(version="2", path="/r/2"),
    )
    report = _report(
        [
            _scores("base", {"golden_perplexity": logs}),
            _scores("champion", {"golden_perplexity": logs}),
            _scores("twin", {"golden_perplexity": logs}),
        ],
        [_ranker("cosine", [1] * 10), _ranker("challenger", [2] * 10), _ranker("champion", [1] * 10)],
    )
    evidence = gate_evidence(report, plan)
    assert evidence["twin-llm"].reference_name == "champion" and evidence["twin-llm"].reference_version == "3"
    assert evidence["twin-reranker"].reference_version == "2"
    assert evidence["twin-reranker"].reference["golden_mrr"] == 1.0  # the champion's, not cosine's


def test_a_metric_measured_on_one_side_only_is_absent_and_blocks() -> None:
    logs = [math.log(30.0)] * 8
    base = _scores("base", {"golden_perplexity": logs, "golden_style_score": [0.3] * 8})
    twin = _scores("twin", {"golden_perplexity": [v - 1 for v in logs], "golden_style_score": []})
    llm = gate_evidence(_report([base, twin], []), EvaluationPlan())["twin-llm"]
    assert "golden_style_score" not in llm.challenger and llm.reference["golden_style_score"] == 0.3
    assert llm.model_validate_json(llm.model_dump_json()) == llm  # what the registry tag holds reads back
    passed, checks = judge(load_gate(None, "twin-llm"), llm)
    assert not passed and [check.passed for check in checks] == [True, False]
