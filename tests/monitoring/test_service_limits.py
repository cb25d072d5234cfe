"""The online detector under abuse, over real HTTP on 127.0.0.1: a body too large, an event of too many
texts, more deliveries than it can hold, and non-finite vectors are refused (413, 429, 400) in the
detector's error shape and counted, while fewer than one batch of texts ever waits.

The detectors are the real ``SpaceDetectors`` over a random reference; the statistical test is a
recording stand-in (these tests are about what reaches it, not about its verdict), and the embedder
a hash of each text, so no model loads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import numpy as np
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from twinops.monitoring.config import DriftConfig, EventLimits
from twinops.monitoring.detectors import DriftResult, SpaceDetectors, SpaceReference
from twinops.monitoring.events import REQUEST_TYPE
from twinops.monitoring.service import DriftDetector, create_app
from twinops.services.process import wait_until

BATCH = 4
DIMENSION = 8


class RecordingTest:
    """Stands in for a drift test: records the size of every batch it is given."""

    name = "recording"
    space = "queries"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, embeddings: np.ndarray) -> DriftResult:
        self.batches.append(len(embeddings))
        return DriftResult(
            detector=self.name,
            space=self.space,
            is_drift=False,
            distance=0.0,
            p_val=1.0,
            threshold=0.05,
            batch_size=len(embeddings),
        )


def _embed(texts: list[str]) -> np.ndarray:
    return np.asarray(
        [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=DIMENSION) for t in texts], np.float32
    )


def _detector(
    limits: EventLimits, embed=_embed, *, verdict_in_reply: bool = True
) -> tuple[DriftDetector, RecordingTest]:
    """The detector over the recording test; by default each delivery's reply says what it did
    (the verdict of the batch it filled), as the refusal tests read it."""
    reference = SpaceReference.fit(
        "queries",
        np.random.default_rng(0).normal(size=(40, DIMENSION)).astype(np.float32),
        DriftConfig(reduced_dimension=4),
    )
    test = RecordingTest()
    detector = DriftDetector(
        {"queries": SpaceDetectors(reference, [test])},
        embed,
        batch_size=BATCH,
        reference_id="limits-test",
        limits=limits,
        verdict_in_reply=verdict_in_reply,
    )
    return detector, test


def _event(data: dict) -> tuple[dict, bytes]:
    headers, body = to_structured(CloudEvent({"type": REQUEST_TYPE, "source": "twin-rag", "id": "e"}, data))
    return dict(headers), body


def test_a_body_past_the_limit_is_a_counted_413_whether_declared_or_streamed(read_metric, serve_app):
    detector, test = _detector(EventLimits(max_bytes=2048))
    url = serve_app(create_app(detector))
    headers, body = _event({"instances": ["x" * 4000]})

    declared = httpx.post(url + "/", headers=headers, content=body)
    assert declared.status_code == 413
    assert declared.json()["error"] == "body_too_large" and "2048" in declared.json()["detail"]

    def chunks():  # no Content-Length: the body streams in until it passes the limit
        yield body[:1500]
        yield body[1500:]

    streamed = httpx.post(url + "/", headers=headers, content=chunks())
    assert streamed.status_code == 413 and streamed.json()["error"] == "body_too_large"
    assert read_metric(url, "twinops_drift_events_rejected_total", reason="body_too_large") == 2.0

    small = httpx.post(url + "/", headers=headers, content=_event({"instances": ["a question"]})[1])
    assert small.status_code == 200 and small.json()["meta"]["pending"] == 1
    assert test.batches == []


def test_an_event_of_too_many_texts_is_a_413_and_nothing_of_it_is_queued(read_metric, serve_app):
    detector, test = _detector(EventLimits(max_texts=10))
    url = serve_app(create_app(detector))
    headers, body = _event({"instances": [f"question {i}" for i in range(11)]})
    reply = httpx.post(url + "/", headers=headers, content=body)
    assert reply.status_code == 413
    assert reply.json() == {"error": "too_many_texts", "detail": reply.json()["detail"]}
    assert "11 texts" in reply.json()["detail"] and "at most 10" in reply.json()["detail"]
    assert read_metric(url, "twinops_drift_events_rejected_total", reason="too_many_texts") == 1.0
    assert read_metric(url, "twinops_drift_pending", space="queries") is None  # nothing was queued
    assert test.batches == []


def test_fewer_than_a_batch_ever_waits_however_many_texts_an_event_carries(read_metric, serve_app):
    detector, test = _detector(EventLimits(max_texts=64))
    url = serve_app(create_app(detector))
    for index in range(5):
        headers, body = _event({"instances": [f"question {index}-{i}" for i in range(4 * BATCH + 1)]})
        reply = httpx.post(url + "/", headers=headers, content=body)
        assert reply.status_code == 200, reply.text
        # Deliveries are queued and tested behind the response: wait for the queue to drain (a
        # full batch left waiting would never drain, and fail here).
        deadline = time.monotonic() + 10
        while read_metric(url, "twinops_drift_pending", space="queries") >= BATCH:
            assert time.monotonic() < deadline, "a full batch was left waiting"
            time.sleep(0.05)
    expected = [BATCH] * (5 * (4 * BATCH + 1) // BATCH)
    deadline = time.monotonic() + 10
    while len(test.batches) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)  # the last batch may still be under test
    assert test.batches == expected
    assert read_metric(url, "twinops_drift_batches_total", space="queries") == len(test.batches)


def _held_embedder() -> tuple[Callable[[list[str]], np.ndarray], threading.Event, threading.Event]:
    """An embedder that holds each batch until ``release`` is set: (embed, entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def held_embed(texts: list[str]) -> np.ndarray:
        entered.set()
        release.wait(timeout=60)
        return _embed(texts)

    return held_embed, entered, release


def _post_in_thread(url: str, body: bytes) -> tuple[threading.Thread, list[httpx.Response]]:
    """Post ``body`` from a thread of its own: (the thread, a list that holds the reply once come)."""
    headers, _ = _event({})
    replies: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: replies.append(httpx.post(url + "/", headers=headers, content=body, timeout=60))
    )
    thread.start()
    return thread, replies


@contextmanager
def _testing_a_batch(
    serve_app, limits: EventLimits, *, verdict_in_reply: bool = True
) -> Iterator[tuple[str, RecordingTest, list]]:
    """A served detector whose first batch is held in the embedder for the duration of the block:
    yields its URL, the recording test, and a list that holds the first delivery's response after."""
    held_embed, entered, release = _held_embedder()
    detector, test = _detector(limits, embed=held_embed, verdict_in_reply=verdict_in_reply)
    url = serve_app(create_app(detector))
    sender, first = _post_in_thread(url, _event({"instances": [f"question {i}" for i in range(BATCH)]})[1])
    try:
        assert entered.wait(timeout=30), "the first batch never reached the embedder"
        yield url, test, first
    finally:
        release.set()
        sender.join(timeout=60)


def test_past_max_waiting_a_delivery_is_shed_with_a_counted_429_and_retry_after(read_metric, serve_app):
    headers, body = _event({"instances": [f"question {i}" for i in range(BATCH)]})
    limits = EventLimits(max_waiting=1, retry_after_seconds=7)
    with _testing_a_batch(serve_app, limits) as (url, _test, first):  # the first delivery holds it
        shed = httpx.post(url + "/", headers=headers, content=body)
    assert shed.status_code == 429 and shed.headers["retry-after"] == "7"
    assert shed.json()["error"] == "overloaded"
    assert first[0].status_code == 200 and first[0].json()["data"] is not None
    assert read_metric(url, "twinops_drift_events_rejected_total", reason="overloaded") == 1.0
    # Once the detector is free again, deliveries are taken.
    assert httpx.post(url + "/", headers=headers, content=body).status_code == 200


def test_an_all_nan_embedding_is_a_400_naming_the_field(read_metric, serve_app):
    detector, test = _detector(EventLimits())
    url = serve_app(create_app(detector))
    headers, _ = _event({})
    body = json.dumps(
        {
            "specversion": "1.0",
            "type": REQUEST_TYPE,
            "source": "twin-embedder",
            "id": "nan",
            "data": {"data": [{"embedding": [float("nan")] * DIMENSION}] * BATCH},
        }
    ).encode()  # json.dumps writes the NaN literal, as a careless client does
    reply = httpx.post(url + "/", headers=headers, content=body)
    assert reply.status_code == 400
    assert reply.json()["error"] == "non_finite_embedding"
    assert reply.json()["detail"].startswith("data[0].embedding holds NaN")
    assert read_metric(url, "twinops_drift_events_rejected_total", reason="non_finite_embedding") == 1.0
    assert test.batches == []


def test_deliveries_are_answered_while_a_batch_is_being_tested(serve_app):
    """Testing a batch (embedding, the detectors) does not hold up the next deliveries: the loggers
    keep posting, and a delivery that fills no batch is answered at once."""
    headers, body = _event({"instances": ["one more question"]})
    with _testing_a_batch(serve_app, EventLimits()) as (url, test, first):
        reply = httpx.post(url + "/", headers=headers, content=body, timeout=10)
        assert reply.status_code == 200 and reply.json()["meta"]["pending"] == 1
        assert test.batches == []  # the first batch is still being tested
    assert first[0].status_code == 200 and first[0].json()["data"]["is_drift"] == 0
    assert test.batches == [BATCH]


def test_answering_at_once_a_delivery_that_fills_a_batch_is_a_202_while_its_batch_is_tested(
    metric_reaches, serve_app
):
    """As shipped (``verdict_in_reply`` off): the logger is answered before the test, which goes on."""
    with _testing_a_batch(serve_app, EventLimits(), verdict_in_reply=False) as (url, test, first):
        assert wait_until(lambda: bool(first), timeout=30), "the first delivery was never answered"
        assert first[0].status_code == 202, first[0].text  # answered while its test is held
        assert first[0].json() == {"data": None, "meta": {"pending": 0, "batch_size": BATCH, "testing": 1}}
        assert test.batches == []
    assert metric_reaches(url, "twinops_drift_batches_total", 1.0, space="queries"), "never tested"
    assert test.batches == [BATCH]


def test_past_max_testing_the_next_delivery_that_fills_a_batch_waits_for_a_test_to_end(
    metric_reaches, serve_app
):
    """Bounded: with one batch under test and ``max_testing=1``, the next full batch's delivery is
    not answered until that test ends; a delivery that fills nothing is answered meanwhile."""
    _, full = _event({"instances": [f"another question {i}" for i in range(BATCH)]})
    _, one = _event({"instances": ["one more question"]})
    limits = EventLimits(max_testing=1)
    with _testing_a_batch(serve_app, limits, verdict_in_reply=False) as (url, test, first):
        assert wait_until(lambda: bool(first), timeout=30), "the first delivery was never answered"
        assert first[0].status_code == 202
        waiting, second = _post_in_thread(url, full)
        # It arrives (its events are counted), then waits for room to test.
        assert metric_reaches(url, "twinops_drift_events_total", 2.0, space="queries"), "it never arrived"
        answered = httpx.post(url + "/", headers=_event({})[0], content=one, timeout=10)
        assert answered.status_code == 200 and answered.json()["meta"]["pending"] == 1
        assert second == [] and test.batches == []  # the first test still holds the only room
    waiting.join(timeout=60)
    assert second[0].status_code == 202 and second[0].json()["meta"]["testing"] == 1
    wait_until(lambda: len(test.batches) >= 2, timeout=30)
    assert test.batches == [BATCH, BATCH]


def test_a_server_stopping_tests_the_batches_it_answered_before_it_ends():
    """A pod told to stop (SIGTERM) finishes the tests of the deliveries it already answered: their
    verdicts are recorded by the time the server has stopped, not lost with the process."""
    import uvicorn

    from twinops.services.process import free_port

    held_embed, entered, release = _held_embedder()
    detector, test = _detector(EventLimits(), embed=held_embed, verdict_in_reply=False)
    port = free_port()
    config = uvicorn.Config(create_app(detector), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    assert wait_until(lambda: server.started, timeout=30)
    headers, body = _event({"instances": [f"question {i}" for i in range(BATCH)]})
    reply = httpx.post(f"http://127.0.0.1:{port}/", headers=headers, content=body, timeout=30)
    assert reply.status_code == 202 and entered.wait(timeout=30)
    server.should_exit = True
    threading.Timer(0.5, release.set).start()  # the test ends after the server was told to stop
    serving.join(timeout=60)
    assert not serving.is_alive()
    assert test.batches == [BATCH]  # tested before the server's run returned
    assert (
        detector.metrics.registry.get_sample_value("twinops_drift_batches_total", {"space": "queries"}) == 1.0
    )
