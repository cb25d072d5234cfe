"""Stand-ins for what cannot run on this machine: a Kubernetes API server and Prometheus.

``KubeEmulator`` is a small in-process HTTP server on 127.0.0.1 that answers the official
``kubernetes`` client the way the API server does for the calls the rollout makes: GET and PATCH
(``application/merge-patch+json``, applied per RFC 7386) of ``serving.kserve.io/v1beta1``
InferenceServices, and POST of core/v1 Events. It stores objects, records every patch and event,
and answers 404 for unknown objects in the API's ``Status`` shape. It validates nothing else: no
KServe webhook runs, so tests assert the patches themselves.

``FakePrometheus`` answers ``GET /api/v1/query`` with the value configured for the first query
whose text contains a given substring, and records the queries it was asked.

Helpers shared with other test folders: ``chat_stand_in`` (an OpenAI chat route standing in for an
LLM server), ``serve_app`` (an ASGI app on uvicorn in a thread) and ``write_kubeconfig``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

NAMESPACE, NAME = "twinops", "twin-llm"
STABLE_ARGS = ["--model_uri=models:/twin-llm@champion"]
STABLE_ADDRESS = "http://twin-llm-predictor.twinops.svc.cluster.local"
LATEST_URL = "http://latest-twin-llm-predictor.twinops.example.com"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
_ISVC_PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices/(?P<name>[^/]+)$"
)
_EVENTS_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")


def inference_service(mode: str) -> dict:
    """twin-llm as the kustomize base deploys it, in ``mode``, with the status KServe reports."""
    predictor = {
        "serviceAccountName": "twinops-serving",
        "minReplicas": 1,
        "maxReplicas": 2,
        "scaleMetric": "cpu",
        "scaleTarget": 80,
        "model": {"modelFormat": {"name": "twinops"}, "runtime": "twinops", "args": list(STABLE_ARGS)},
    }
    status = {"url": "http://twin-llm.twinops.example.com", "address": {"url": STABLE_ADDRESS}}
    if mode in ("Serverless", "Knative"):
        status["components"] = {
            "predictor": {
                "url": "http://twin-llm-predictor.twinops.example.com",
                "address": {"url": STABLE_ADDRESS},
                "latestCreatedRevision": "twin-llm-predictor-00002",
                "traffic": [
                    {
                        "tag": "prev",
                        "percent": 90,
                        "url": "http://prev-twin-llm-predictor.twinops.example.com",
                    },
                    {"tag": "latest", "latestRevision": True, "percent": 10, "url": LATEST_URL},
                ],
            }
        }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "generation": 1,
            "annotations": {DEPLOYMENT_MODE: mode},
        },
        "spec": {"predictor": predictor},
        "status": status,
    }


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written independently of the code under test."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


@dataclass
class KubeEmulator:
    url: str = ""
    objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    patches: list[dict] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    events_forbidden: bool = False

    def add(self, obj: dict) -> None:
        meta = obj["metadata"]
        self.objects[(meta["namespace"], meta["name"])] = copy.deepcopy(obj)

    def get(self, namespace: str, name: str) -> dict:
        return self.objects[(namespace, name)]

    def spec_patches(self) -> list[dict]:
        """The ``spec`` part of every patch, in order (annotations left out)."""
        return [patch.get("spec") for patch in self.patches]


def _handler(emulator: KubeEmulator):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self, what: str) -> None:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": f"{what} not found",
                    "reason": "NotFound",
                    "code": 404,
                },
            )

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self) -> None:
            match = _ISVC_PATH.match(urlparse(self.path).path)
            key = (match["ns"], match["name"]) if match else None
            if key is None or key not in emulator.objects:
                self._not_found(f'inferenceservices.serving.kserve.io "{match["name"] if match else "?"}"')
                return
            self._send(200, emulator.objects[key])

        def do_PATCH(self) -> None:
            match = _ISVC_PATH.match(urlparse(self.path).path)
            body = self._body()
            key = (match["ns"], match["name"]) if match else None
            if key is None or key not in emulator.objects:
                self._not_found("inferenceservice")
                return
            emulator.patches.append(body)
            emulator.content_types.append(self.headers.get("Content-Type", ""))
            updated = apply_merge_patch(emulator.objects[key], body)
            updated["metadata"]["generation"] = updated["metadata"].get("generation", 1) + 1
            emulator.objects[key] = updated
            self._send(200, updated)

        def do_POST(self) -> None:
            match = _EVENTS_PATH.match(urlparse(self.path).path)
            if match is None:
                self._not_found("resource")
                return
            if emulator.events_forbidden:
                self._send(
                    403,
                    {
                        "kind": "Status",
                        "status": "Failure",
                        "reason": "Forbidden",
                        "code": 403,
                        "message": "no",
                    },
                )
                return
            event = self._body()
            emulator.events.append(event)
            self._send(201, event)

    return Handler


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(emulator))
    emulator.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield emulator
    server.shutdown()
    server.server_close()


@pytest.fixture
def kube_apis(kube: KubeEmulator):
    """(CustomObjectsApi, CoreV1Api) of the official client, pointed at the emulator."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = kube.url
    api_client = client.ApiClient(configuration)
    yield client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    api_client.close()


@dataclass
class FakePrometheus:
    url: str = ""
    values: dict[str, float | None] = field(default_factory=dict)  # query substring -> value
    queries: list[str] = field(default_factory=list)


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query).get("query", [""])[0]
            fake.queries.append(query)
            value = next((v for key, v in fake.values.items() if key in query), None)
            result = [] if value is None else [{"metric": {}, "value": [1764650000.0, str(value)]}]
            data = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def chat_stand_in(reply_for: Callable[[str], tuple[int, str]]) -> tuple[ThreadingHTTPServer, str, list[dict]]:
    """(server, root URL, request bodies) of an OpenAI chat route; ``reply_for(question)`` gives
    (status, content): 200 answers a chat completion, anything else an OpenAI error body."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, **body})
            status, content = reply_for(body["messages"][-1]["content"])
            reply = (
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                    "usage": {"completion_tokens": len(content.split())},
                }
                if status == 200
                else {"error": {"message": content}}
            )
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", seen


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """``app`` on uvicorn on a free 127.0.0.1 port in a thread; yields its URL, stops it after."""
    import uvicorn

    from twinops.services.process import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig whose only context is ``server`` with no credentials (the API stand-in)."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: stand-in, cluster: {{server: "{server}"}}}}]
users: [{{name: nobody, user: {{}}}}]
contexts: [{{name: stand-in, context: {{cluster: stand-in, user: nobody}}}}]
current-context: stand-in
""",
        encoding="utf-8",
    )
    return path
