"""GoldenScorer: the golden questions through a server's OpenAI chat route, scored by ROUGE-L."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.chat_stand_in import chat_stand_in

from twinops.errors import NotFound, ServiceUnavailable
from twinops.rollout.scoring import GoldenScorer

ROWS = [("Q1?", "alpha beta gamma"), ("Q2?", "delta epsilon")]


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    folder = tmp_path / "golden"
    folder.mkdir()
    lines = [json.dumps({"instruction": q, "reference": a}) for q, a in ROWS]
    (folder / "test.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return folder


def test_scores_are_rouge_l_of_the_answers_and_requests_are_greedy(settings, golden) -> None:
    answers = {"Q1?": "alpha beta gamma", "Q2?": "nothing alike"}
    server, root, seen = chat_stand_in(lambda q: (200, answers[q]))
    url = f"{root}/openai/v1"
    try:
        score = GoldenScorer(settings, golden=str(golden), max_tokens=32)(url, "twin-llm")
    finally:
        server.close()
    assert score == pytest.approx(0.5)  # 1.0 for the first, 0.0 for the second
    assert [(r["path"], r["model"], r["temperature"], r["max_tokens"]) for r in seen] == [
        ("/openai/v1/chat/completions", "twin-llm", 0.0, 32)
    ] * 2


def test_a_failing_server_is_service_unavailable(settings, golden) -> None:
    server, root, _ = chat_stand_in(lambda q: (500, "out of memory"))
    url = f"{root}/openai/v1"
    try:
        with pytest.raises(ServiceUnavailable, match="answered 500"):
            GoldenScorer(settings, golden=str(golden))(url, "twin-llm")
    finally:
        server.close()


def test_a_missing_golden_folder_is_not_found(settings, tmp_path) -> None:
    with pytest.raises(NotFound, match="golden dataset folder"):
        GoldenScorer(settings, golden=str(tmp_path / "nope" / "x")).rows()
