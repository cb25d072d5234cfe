"""The callers of the one OpenAI chat client (``infra.llm_client.chat_completion``) beside the judge
and the generator: the rollout's ``ProbeHealth`` (a canary that answers 5xx or is unreachable fails
its probes; a 4xx is the probe's own fault; no retries) and ``twinops ask`` (one line naming --url,
or the server's own reason). A real HTTP server on loopback answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twinops.rollout.health import CanaryEndpoint, ProbeHealth

REPLY = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "twin-llm",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "I write."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


@pytest.fixture
def canary() -> Iterator[tuple[list[int], list[dict], str]]:
    """A stand-in canary answering the statuses queued in the first list (200 once they run out)."""
    statuses: list[int] = []
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(
                {"path": self.path, **json.loads(self.rfile.read(int(self.headers["Content-Length"])))}
            )
            status = statuses.pop(0) if statuses else 200
            body = (
                REPLY
                if status == 200
                else {"error": {"message": f"status {status}", "type": "x", "code": status}}
            )
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield statuses, bodies, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _endpoint(url: str) -> CanaryEndpoint:
    return CanaryEndpoint(url=url, model="twin-llm", workload="twin-llm-canary", namespace="twinops")


def test_server_errors_count_against_the_canary_and_bad_requests_do_not(canary) -> None:
    statuses, bodies, url = canary
    statuses += [500, 503, 400]
    health = ProbeHealth(requests=5).read(_endpoint(url), 60)
    assert health.error_rate == pytest.approx(2 / 5) and health.requests == 5 and health.source == "probe"
    assert health.p95_latency_s is not None
    assert {body["path"] for body in bodies} == {"/openai/v1/chat/completions"}
    assert len(bodies) == 5, "no retries: a failed request is what the probe measures"
    assert all(body["model"] == "twin-llm" and body["temperature"] == 0 for body in bodies)


def test_an_unreachable_canary_fails_every_probe() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    health = ProbeHealth(requests=3).read(_endpoint(f"http://127.0.0.1:{port}"), 60)
    assert health.error_rate == 1.0 and health.p95_latency_s is None


def test_twinops_ask_says_in_one_line_which_flag_names_an_unreachable_server(home, capsys) -> None:
    from tests.support.one_line import one_line_error

    from twinops.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/openai/v1"
    one_line_error(main, ["ask", "What survived production?", "--url", url], capsys, url, "--url")


def test_twinops_ask_passes_the_servers_own_reason_on(canary, home, capsys) -> None:
    from tests.support.one_line import one_line_error

    from twinops.cli import main

    statuses, _, url = canary
    statuses.append(400)
    one_line_error(main, ["ask", "?", "--url", f"{url}/openai/v1"], capsys, "answered 400: status 400")
