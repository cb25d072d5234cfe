"""An OpenAI-compatible chat server stand-in on 127.0.0.1: a real HTTP server whose replies a test
scripts, for the clients that call a hosted model (the dataset generator, the judge) and the
LLM servers a rollout or the RAG server calls (``chat_stand_in``).

``reply(path, body)`` gives ``(status, payload)``; every request is kept in ``requests`` as
``{"path", "body", "auth"}`` (the ``Authorization`` header), in the order they came.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

Reply = Callable[[str, dict], tuple[int, dict | None]]


class ChatStandIn:
    """Serves ``reply`` at ``root`` (``http://127.0.0.1:PORT``; ``url`` is its ``/v1``); a context
    manager."""

    def __init__(self, reply: Reply) -> None:
        self.requests: list[dict] = []
        lock = threading.Lock()
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    requests.append(
                        {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                    )
                status, payload = reply(self.path, body)
                data = json.dumps(payload).encode() if payload is not None else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.root = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.url = f"{self.root}/v1"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> ChatStandIn:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def chat_stand_in(reply_for: Callable[[str], tuple[int, str]]) -> tuple[ChatStandIn, str, list[dict]]:
    """(server, root URL, request bodies with their ``path``) of an LLM server's chat route:
    ``reply_for(question)`` gives (status, content) for the last message; 200 answers a chat
    completion, anything else an OpenAI error body."""
    seen: list[dict] = []

    def reply(path: str, body: dict) -> tuple[int, dict]:
        seen.append({"path": path, **body})
        status, content = reply_for(body["messages"][-1]["content"])
        if status != 200:
            return status, {"error": {"message": content}}
        return 200, chat_completion(content)

    server = ChatStandIn(reply)
    return server, server.root, seen


def chat_completion(content: str) -> dict:
    """An OpenAI chat completion answering ``content``, with its completion tokens counted."""
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"completion_tokens": len(content.split())},
    }
