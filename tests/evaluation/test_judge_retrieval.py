"""The LLM judge against a local fake OpenAI-compatible server; retrieval against a real local Qdrant."""

from __future__ import annotations

import pytest

from twinops.errors import ConfigError
from twinops.evaluation.data import GoldenRow
from twinops.evaluation.judge import Judge, judge_status, parse_scores
from twinops.evaluation.retrieval import retrieval_scores


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


def _untrained_twin_reranker(bundled_models_dir, folder):
    """What reranker training saves before its first step: a zero head over MiniLM, plus cosine."""
    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from twinops.models.rerank import FIRST_STAGE_DIR, RerankerConfig, write_config

    minilm = str(bundled_models_dir / "all-minilm-l6-v2")
    cross_encoder = CrossEncoder(minilm, num_labels=1, device="cpu")
    torch.nn.init.zeros_(cross_encoder.model.classifier.weight)
    torch.nn.init.zeros_(cross_encoder.model.classifier.bias)
    cross_encoder.save_pretrained(str(folder))
    SentenceTransformer(minilm, device="cpu").save(str(folder / FIRST_STAGE_DIR))
    write_config(folder, RerankerConfig(first_stage_weight=20.0))
    return str(folder)


@pytest.mark.slow
def test_retrieval_ranks_the_same_lists_by_cosine_and_by_each_reranker(
    eval_settings, chunk_collection, bundled_models_dir, golden_triples, tmp_path
) -> None:
    rows = [GoldenRow(instruction=q, reference=r, chunk_id=c) for q, r, c in golden_triples]
    rows.append(GoldenRow(instruction="Why use a feature store?", reference="r", chunk_id="not-a-chunk"))
    untrained = _untrained_twin_reranker(bundled_models_dir, tmp_path / "reranker")
    scored = retrieval_scores(eval_settings, rows, {"untrained": untrained}, k=1, candidates=5, device="cpu")
    assert scored is not None
    cosine, reranked = scored
    assert (cosine.name, reranked.name) == ("cosine", "untrained")
    # Each question names its chunk's topic; the fifth names a chunk that does not exist.
    assert cosine.per_question["golden_hit_at_1"] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert cosine.metrics["golden_mrr"] == 0.8
    low, high = cosine.intervals["golden_mrr"]
    assert low < 0.8 < high
    # Before training, the twin reranker's score is cosine plus a constant: the same order exactly.
    assert reranked.per_question == cosine.per_question


def test_retrieval_without_collection_is_none(eval_settings) -> None:
    rows = [GoldenRow(instruction="q", reference="r", chunk_id="c")]
    assert retrieval_scores(eval_settings, rows, {}, k=5) is None


def test_paraphrased_rows_are_also_scored_apart() -> None:
    """golden_paraphrased_* cover the paraphrased rows alone, each row once, beside all rows."""
    from twinops.evaluation.retrieval import COSINE, ranker_scores

    rows = [
        GoldenRow(instruction="keyword probe", reference="r", chunk_id="a", origin="probe"),
        GoldenRow(instruction="how come?", reference="r", chunk_id="b", paraphrased=True),
        GoldenRow(instruction="why so?", reference="r", chunk_id="c", paraphrased=True),
    ]
    listed = [("a", ""), ("c", ""), ("b", "")]
    scores = ranker_scores(COSINE, "qdrant", rows, [listed] * 3, lambda _, hits: hits, k=2)
    assert scores.per_question["golden_mrr"] == [1.0, 1 / 3, 0.5]
    assert scores.per_question["golden_paraphrased_mrr"] == [1 / 3, 0.5]
    assert scores.per_question["golden_paraphrased_hit_at_2"] == [0.0, 1.0]
    assert scores.metrics["golden_paraphrased_mrr"] == pytest.approx(5 / 12)
    without = ranker_scores(COSINE, "qdrant", rows[:1], [listed], lambda _, hits: hits, k=2)
    assert not any(metric.startswith("golden_paraphrased_") for metric in without.metrics)
