"""The async reranker and chat clients against a real HTTP server on 127.0.0.1.

The server is a scripted stand-in answering in the wire shapes (vLLM/KServe rerank, OpenAI chat),
so that what the clients send and how they report a broken server is checkable; the clients
against the project's real servers are tested with those servers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twinops.errors import ServiceUnavailable
from twinops.serving.clients import ChatClient, RerankerClient


class ScriptedServer:
    """Answers POSTs under /openai/v1 with ``replies[path]`` = (status, body); records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.replies: dict[str, tuple[int, object]] = {}
        # Set: answer only these Host headers, as an ingress gateway answers only its routes' hosts.
        self.hosts: set[str] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                status, reply = server.replies.get(self.path, (404, {"error": "no such route"}))
                if server.hosts is not None and self.headers["Host"] not in server.hosts:
                    status, reply = 404, {"error": f"no route for host {self.headers['Host']}"}
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/openai/v1"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


def _rerank(url: str, documents: list[str], top_n: int = 2):
    async def run():
        async with RerankerClient(url, "twin-reranker") as client:
            return await client.rerank("which is best?", documents, top_n)

    return asyncio.run(run())


def _chat(url: str, host: str | None = None):
    async def run():
        async with ChatClient(url, "twin-llm", host=host) as client:
            return await client.chat([{"role": "user", "content": "hi"}], 16, 0.0)

    return asyncio.run(run())


def test_rerank_speaks_the_rerank_api(server: ScriptedServer) -> None:
    server.replies["/openai/v1/rerank"] = (
        200,
        {
            "results": [
                {"index": 2, "document": {"text": "c"}, "relevance_score": 0.9},
                {"index": 0, "document": {"text": "a"}, "relevance_score": 0.4},
            ]
        },
    )
    assert _rerank(server.url, ["a", "b", "c"]) == [(2, 0.9), (0, 0.4)]
    path, body = server.requests[-1]
    assert path == "/openai/v1/rerank"
    assert body == {
        "model": "twin-reranker",
        "query": "which is best?",
        "documents": ["a", "b", "c"],
        "top_n": 2,
    }


def test_chat_returns_the_text_and_generated_tokens(server: ScriptedServer) -> None:
    server.replies["/openai/v1/chat/completions"] = (
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
    )
    assert _chat(server.url) == ("Hello.", 2, None)  # no router in front: no backend header
    _, body = server.requests[-1]
    assert body["model"] == "twin-llm" and body["max_tokens"] == 16 and body["messages"][0]["content"] == "hi"


def test_through_an_ingress_gateway_the_chat_names_the_inference_services_host(
    server: ScriptedServer,
) -> None:
    """On a cluster RAG calls the LLM's InferenceService route at the gateway (where KServe's
    HTTPRoute splits stable and canary), which answers only the route's host."""
    route = "twin-llm-twinops-dev.example.com"
    server.hosts = {route}
    server.replies["/openai/v1/chat/completions"] = (
        200,
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}}], "usage": {}},
    )
    with pytest.raises(ServiceUnavailable, match=r"answered 404: no route for host 127\.0\.0\.1"):
        _chat(server.url)
    assert _chat(server.url, host=route).text == "Hi."


def test_an_error_answer_is_one_line_with_the_servers_message(server: ScriptedServer) -> None:
    server.replies["/openai/v1/rerank"] = (400, {"error": {"message": "documents must not\nbe empty"}})
    with pytest.raises(ServiceUnavailable) as raised:
        _rerank(server.url, ["a"])
    message = str(raised.value)
    assert f"{server.url}/rerank answered 400: documents must not be empty" in message
    assert "--reranker_url" in message and "\n" not in message

    server.replies["/openai/v1/chat/completions"] = (500, {"error": "V2 style failure"})
    with pytest.raises(ServiceUnavailable, match="answered 500: V2 style failure"):
        _chat(server.url)


def test_a_body_of_the_wrong_shape_names_the_setting(server: ScriptedServer) -> None:
    server.replies["/openai/v1/rerank"] = (200, {"scores": [0.1]})
    with pytest.raises(ServiceUnavailable, match=r"no \{results.*--reranker_url"):
        _rerank(server.url, ["a"])
    server.replies["/openai/v1/rerank"] = (200, {"results": [{"index": 5, "relevance_score": 1.0}]})
    with pytest.raises(ServiceUnavailable, match="out of range"):
        _rerank(server.url, ["a"])
    server.replies["/openai/v1/chat/completions"] = (200, "<html>not json</html>")
    with pytest.raises(ServiceUnavailable, match=r"not JSON.*--llm_url"):
        _chat(server.url)


def test_an_unreachable_server_names_the_url_and_the_flag() -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/openai/v1"
    with pytest.raises(ServiceUnavailable, match=rf"{url}/chat/completions is unreachable .*--llm_url"):
        _chat(url)
