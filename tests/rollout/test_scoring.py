"""GoldenScorer: the golden questions through a server's OpenAI chat route, scored by ROUGE-L."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from twinops.errors import NotFound, ServiceUnavailable
from twinops.rollout.scoring import GoldenScorer

ROWS = [("Q1?", "alpha beta gamma"), ("Q2?", "delta epsilon")]


def _chat_server(reply_for) -> tuple[ThreadingHTTPServer, str, list[dict]]:
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, **body})
            status, content = reply_for(body["messages"][-1]["content"])
            data = json.dumps({"choices": [{"message": {"content": content}}], "usage": {}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/openai/v1", seen


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    folder = tmp_path / "golden"
    folder.mkdir()
    lines = [json.dumps({"instruction": q, "reference": a}) for q, a in ROWS]
    (folder / "test.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return folder


def test_scores_are_rouge_l_of_the_answers_and_requests_are_greedy(settings, golden) -> None:
    answers = {"Q1?": "alpha beta gamma", "Q2?": "nothing alike"}
    server, url, seen = _chat_server(lambda q: (200, answers[q]))
    try:
        score = GoldenScorer(settings, golden=str(golden), max_tokens=32)(url, "twin-llm")
    finally:
        server.shutdown()
    assert score == pytest.approx(0.5)  # 1.0 for the first, 0.0 for the second
    assert [(r["path"], r["model"], r["temperature"], r["max_tokens"]) for r in seen] == [
        ("/openai/v1/chat/completions", "twin-llm", 0.0, 32)
    ] * 2


def test_a_failing_server_is_service_unavailable(settings, golden) -> None:
    server, url, _ = _chat_server(lambda q: (500, ""))
    try:
        with pytest.raises(ServiceUnavailable, match="answered 500"):
            GoldenScorer(settings, golden=str(golden))(url, "twin-llm")
    finally:
        server.shutdown()


def test_a_missing_golden_folder_is_not_found(settings, tmp_path) -> None:
    with pytest.raises(NotFound, match="golden dataset folder"):
        GoldenScorer(settings, golden=str(tmp_path / "nope" / "x")).rows()
