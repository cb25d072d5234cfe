"""While the LLM server is down (killed, being restarted by `twinops serve all`'s supervisor), the RAG
server answers 503 in OpenAI's error shape, naming the LLM and the flag that points at it, keeps
passing its own probes, and answers again as soon as the LLM is back on its port (issue 25, item 5).

The RAG process, its index and warehouse are real; the LLM is a stand-in that answers OpenAI's chat
shape and can be stopped and started again on the same port (the supervisor's restart is tested with
real servers in test_local_servers.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import start_server
from tests.serving.test_rag_server import planted_rag_env

from twinops.services.process import free_port
from twinops.serving.local import LocalServers
from twinops.settings import Settings

pytestmark = pytest.mark.slow  # a RAG process over MiniLM, Qdrant and MongoDB


class ChatStandIn:
    """An OpenAI chat server on a fixed port that can go down and come back on it."""

    def __init__(self, port: int) -> None:
        self.port, self._http = port, None

    def up(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                body = json.dumps(
                    {
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Back."}}],
                        "usage": {"completion_tokens": 1},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ThreadingHTTPServer.allow_reuse_address = True
        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


@pytest.fixture
def outage_env(tmp_path: Path, embedded_mongodb: str, minilm_dir: Path) -> Iterator[Settings]:
    with planted_rag_env(tmp_path / "home", "t_rag_outage", embedded_mongodb, minilm_dir) as settings:
        yield settings


def _ask(url: str) -> httpx.Response:
    question = {"model": "twin-rag", "messages": [{"role": "user", "content": "What survived production?"}]}
    return httpx.post(f"{url}/chat/completions", json=question, timeout=120)


def test_while_the_llm_is_down_rag_answers_503_in_openai_shape_and_recovers_when_it_is_back(
    outage_env: Settings,
) -> None:
    llm = ChatStandIn(free_port())
    llm.up()
    try:
        with LocalServers(outage_env) as servers:
            rag = start_server(
                servers,
                "rag",
                "--llm_url",
                f"http://127.0.0.1:{llm.port}/openai/v1",
                "--index_refresh_seconds",
                "0",
            )
            assert _ask(rag.openai_url).json()["choices"][0]["message"]["content"] == "Back."

            llm.down()  # the LLM server died; its supervisor is restarting it
            during = _ask(rag.openai_url)
            assert during.status_code == 503, during.text[:300]
            error = during.json()["error"]
            assert error["type"] == "server_error"
            assert f"127.0.0.1:{llm.port}" in error["message"] and "--llm_url" in error["message"]
            assert "\n" not in error["message"]
            ready = httpx.get(f"{rag.url}/v2/models/twin-rag/ready", timeout=10)
            assert ready.status_code == 200, "RAG itself is up: the kubelet must not restart it too"

            llm.up()  # back on its port
            assert _ask(rag.openai_url).json()["choices"][0]["message"]["content"] == "Back."
    finally:
        llm.down()
