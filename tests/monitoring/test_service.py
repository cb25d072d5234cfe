"""The online detector over real HTTP on 127.0.0.1: CloudEvents in both modes, the Seldon-shaped
verdict, Prometheus gauges, the reply CloudEvent and webhook, bad input, and the retraining trigger.

The detectors are real (evidently's MMD on MiniLM embeddings of the generated questions); the
pipeline runner is a recording stand-in (a real run needs KFP), as the retraining test says.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import SpaceDetectors, SpaceReference, fit_evidently
from twinops.monitoring.events import REQUEST_TYPE, RESPONSE_TYPE
from twinops.monitoring.retrain import RetrainRequest, RetrainTrigger
from twinops.monitoring.service import DriftDetector, create_app
from twinops.services.process import wait_until

pytestmark = pytest.mark.slow  # MiniLM embeds the events

BATCH = 8


@pytest.fixture(scope="module")
def queries_detectors(drift_vectors) -> SpaceDetectors:
    config = DriftConfig(batch_size=BATCH, calibration_draws=30, evidently_methods=("mmd",))
    reference = SpaceReference.fit("queries", drift_vectors["reference"], config)
    return SpaceDetectors(reference, list(fit_evidently(reference, BATCH, config)))


class Receiver:
    """A plain HTTP server recording what the detector posts (reply URL and webhook)."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(body))
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class RecordingRunner:
    """Stands in for run_local/submit: a real retraining needs a KFP run."""

    def __init__(self) -> None:
        self.requests: list[RetrainRequest] = []

    def __call__(self, request: RetrainRequest) -> str:
        self.requests.append(request)
        return "run-1"


def _serve(queries_detectors, embedder, receiver, tmp_path, serve_app, *, verdict_in_reply: bool):
    runner = RecordingRunner()
    trigger = RetrainTrigger(runner, cooldown=timedelta(hours=1), folder=tmp_path)
    detector = DriftDetector(
        {"queries": queries_detectors},
        lambda texts: embedder.encode(texts, batch_size=BATCH),
        batch_size=BATCH,
        reference_id="drift-test",
        reply_url=f"{receiver.url}/reply",
        webhook_url=f"{receiver.url}/hook",
        trigger=trigger,
        verdict_in_reply=verdict_in_reply,
    )
    return serve_app(create_app(detector)), runner, trigger


@pytest.fixture
def service(queries_detectors, embedder, receiver, tmp_path, serve_app):
    """Seldon's reply: these tests read each batch's verdict from it."""
    return _serve(queries_detectors, embedder, receiver, tmp_path, serve_app, verdict_in_reply=True)


def _post(url: str, text: str, mode, index: int) -> httpx.Response:
    """One logged request, alternating V1 / V2 / OpenAI payloads."""
    payloads = [
        {"instances": [text]},
        {"inputs": [{"name": "question", "datatype": "BYTES", "shape": [1], "data": [text]}]},
        {"model": "twin-rag", "messages": [{"role": "user", "content": text}]},
    ]
    event = CloudEvent({"type": REQUEST_TYPE, "source": "twin-rag", "id": f"e{index}"}, payloads[index % 3])
    headers, body = mode(event)
    return httpx.post(url + "/", headers=dict(headers), content=body, timeout=120)


def _send_batch(url: str, texts: list[str]) -> list[httpx.Response]:
    return [_post(url, text, (to_binary, to_structured)[i % 2], i) for i, text in enumerate(texts)]


def test_a_drifting_batch_gets_a_seldon_verdict_metrics_a_cloudevent_and_one_retraining(
    read_metric, service, drift_texts, receiver
):
    url, runner, trigger = service
    replies = _send_batch(url, drift_texts["language"][:BATCH])
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert [r.json()["meta"].get("pending") for r in replies[:-1]] == list(range(1, BATCH))
    verdict = replies[-1].json()
    assert set(verdict["data"]) == {"is_drift", "distance", "p_val", "threshold"}
    assert verdict["data"]["is_drift"] == 1 and verdict["data"]["p_val"] <= verdict["data"]["threshold"]
    assert verdict["meta"]["detector"] == "evidently-mmd" and verdict["meta"]["reference"] == "drift-test"

    assert read_metric(url, "twinops_drift_detected", detector="evidently-mmd", space="queries") == 1.0
    p_value = read_metric(url, "twinops_drift_p_value", detector="evidently-mmd", space="queries")
    assert p_value == pytest.approx(verdict["data"]["p_val"])
    assert read_metric(url, "twinops_drift_batches_total", space="queries") == 1.0

    paths = {path: (headers, body) for path, headers, body in receiver.received}
    headers, body = paths["/reply"]
    assert headers["content-type"] == "application/cloudevents+json"  # structured mode
    assert body["type"] == "org.twinops.drift" and body["data"] == verdict
    assert paths["/hook"][1] == verdict

    # A second drifting batch within the cool-down: recorded, nothing started.
    _send_batch(url, drift_texts["topic"][:BATCH])
    trigger.wait()
    assert len(runner.requests) == 1
    assert [r.outcome for r in trigger.records()] == ["started", "submitted", "cooldown"]


def test_as_shipped_a_drifting_batch_is_answered_at_once_and_its_verdict_acted_on_after(
    read_metric, queries_detectors, embedder, receiver, tmp_path, serve_app, drift_texts
):
    """The default (``verdict_in_reply`` off): the batch's last delivery is a 202 before any test,
    and the verdict reaches the reply URL, the webhook, the gauges and the trigger all the same."""
    assert DriftConfig().verdict_in_reply is False
    url, runner, trigger = _serve(
        queries_detectors, embedder, receiver, tmp_path, serve_app, verdict_in_reply=False
    )
    replies = _send_batch(url, drift_texts["language"][:BATCH])
    assert [r.status_code for r in replies] == [200] * (BATCH - 1) + [202], [r.text for r in replies]
    assert replies[-1].json() == {"data": None, "meta": {"pending": 0, "batch_size": BATCH, "testing": 1}}

    # The reply event, the webhook, then the trigger's run.
    wait_until(lambda: len(receiver.received) == 2 and runner.requests, timeout=60, interval=0.05)
    paths = {path: body for path, _headers, body in receiver.received}
    verdict = paths["/reply"]["data"]
    assert verdict["data"]["is_drift"] == 1 and paths["/hook"] == verdict
    assert read_metric(url, "twinops_drift_detected", detector="evidently-mmd", space="queries") == 1.0
    assert read_metric(url, "twinops_drift_batches_total", space="queries") == 1.0
    trigger.wait()
    assert len(runner.requests) == 1 and runner.requests[0].reference_id == "drift-test"


def test_the_same_distribution_is_not_flagged(read_metric, service, drift_texts):
    url, runner, _trigger = service
    verdict = _send_batch(url, drift_texts["same"][:BATCH])[-1].json()
    assert verdict["data"]["is_drift"] == 0
    assert read_metric(url, "twinops_drift_detected", detector="evidently-mmd", space="queries") == 0.0
    assert runner.requests == []


def test_bad_events_are_counted_and_the_detector_keeps_running(read_metric, service, drift_texts):
    url, _runner, _trigger = service
    base = {"ce-specversion": "1.0", "ce-source": "s", "ce-id": "x", "content-type": "application/json"}
    bad = [
        ({"content-type": "application/json"}, {"instances": ["no ce headers"]}, "malformed_cloudevent"),
        ({**base, "ce-type": REQUEST_TYPE}, {"instances": [""]}, "no_text"),
        (
            {**base, "ce-type": REQUEST_TYPE},
            {"inputs": [{"name": "e", "datatype": "FP32", "shape": [1, 8], "data": [0.0] * 8}]},
            "wrong_dimension",
        ),
        ({**base, "ce-type": RESPONSE_TYPE}, {"predictions": ["an answer"]}, "space_not_monitored"),
    ]
    for headers, payload, reason in bad:
        reply = httpx.post(url + "/", headers=headers, content=json.dumps(payload).encode())
        assert reply.status_code == 400 and reply.json()["error"] == reason, reply.text
        assert read_metric(url, "twinops_drift_events_rejected_total", reason=reason) == 1.0
    verdict = _send_batch(url, drift_texts["same"][:BATCH])[-1].json()
    assert verdict["data"] is not None


def test_embeddings_of_the_right_dimension_are_tested_without_embedding(service, drift_vectors):
    url, _runner, _trigger = service
    vectors = np.asarray(drift_vectors["same"][:BATCH])
    event = CloudEvent(
        {"type": REQUEST_TYPE, "source": "twin-embedder", "id": "v"},
        {
            "outputs": [
                {
                    "name": "embedding",
                    "datatype": "FP32",
                    "shape": list(vectors.shape),
                    "data": vectors.ravel().tolist(),
                }
            ]
        },
    )
    headers, body = to_structured(event)
    verdict = httpx.post(url + "/", headers=dict(headers), content=body, timeout=120).json()
    assert verdict["meta"]["batch_size"] == BATCH and verdict["data"]["is_drift"] == 0
