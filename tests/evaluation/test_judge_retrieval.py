"""The LLM judge against a local fake OpenAI-compatible server; retrieval against a real local Qdrant."""

from __future__ import annotations

import pytest

from twinops.errors import ConfigError
from twinops.evaluation.data import GoldenRow
from twinops.evaluation.judge import Judge, judge_status, parse_scores
from twinops.evaluation.retrieval import retrieval_metrics


def test_judge_skipped_when_unconfigured(settings) -> None:
    assert judge_status(settings) == "skipped: TWINOPS_JUDGE_URL is not set"


def test_parse_scores() -> None:
    assert parse_scores('{"accuracy": {"score": 1}, "style": {"score": 3}}') == (1, 3)
    assert parse_scores("I think it is a 3") is None
    assert parse_scores('{"accuracy": {"score": 7}, "style": {"score": 3}}') is None


def test_judge_scores_with_fake_server(settings, fake_judge, monkeypatch) -> None:
    url, requests = fake_judge
    monkeypatch.setattr(settings, "judge_url", url)
    monkeypatch.setattr(settings, "judge_model", "fake-judge")
    monkeypatch.setattr(settings, "judge_api_key", "sekret")
    assert judge_status(settings) is None
    judge = Judge(settings)
    try:
        assert judge.score("Why a feature store?", "Consistency.", "It keeps features consistent.") == (3, 2)
    finally:
        judge.close()
    sent = requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sekret"
    prompt = sent["body"]["messages"][0]["content"]
    assert "Why a feature store?" in prompt and "It keeps features consistent." in prompt and "1-3" in prompt
    schema = sent["body"]["response_format"]["json_schema"]["schema"]  # structured output
    assert set(schema["required"]) == {"accuracy", "style"}

    monkeypatch.setattr(settings, "judge_model", "missing-model")
    judge = Judge(settings)
    try:
        with pytest.raises(ConfigError, match="HTTP 404"):
            judge.score("q", "r", "a")
    finally:
        judge.close()


def test_retrieval_hit_and_mrr_with_and_without_reranker(
    eval_settings, chunk_collection, bundled_models_dir, golden_triples
) -> None:
    rows = [GoldenRow(instruction=q, reference=r, chunk_id=c) for q, r, c in golden_triples]
    # An untrained CrossEncoder from the MiniLM folder: the reranking path runs end to end.
    metrics = retrieval_metrics(
        eval_settings, rows, k=1, candidates=5, reranker_path=str(bundled_models_dir / "all-minilm-l6-v2")
    )
    assert metrics is not None
    assert metrics["hit_at_1"] == 1.0 and metrics["mrr"] == 1.0  # each question names its chunk's topic
    assert 0.0 <= metrics["reranked_hit_at_1"] <= 1.0 and 0.2 <= metrics["reranked_mrr"] <= 1.0
    assert metrics["questions"] == 4.0

    missing = [GoldenRow(instruction="Why use a feature store?", reference="r", chunk_id="not-a-chunk")]
    assert retrieval_metrics(eval_settings, missing, k=5)["hit_at_5"] == 0.0


def test_retrieval_without_collection_is_none(eval_settings) -> None:
    rows = [GoldenRow(instruction="q", reference="r", chunk_id="c")]
    assert retrieval_metrics(eval_settings, rows, k=5) is None
