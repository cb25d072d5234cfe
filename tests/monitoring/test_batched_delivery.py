"""Batched content mode (the CloudEvents HTTP binding's ``application/cloudevents-batch+json``), over
real HTTP on 127.0.0.1: a delivery of many events is tested as the same events posted one by one,
and a batch with one bad event is refused whole, naming the event, with nothing of it queued.

The detectors are the real ``SpaceDetectors`` (evidently's MMD, calibrated) over synthetic unit
vectors, so no model loads.
"""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from tests.support.synthetic_drift import (
    BATCH,
    embedding_data,
    post_rows,
    queries_space,
    unit_vectors,
    vectors_only_detector,
)

from twinops.monitoring.config import EventLimits
from twinops.monitoring.detectors import SpaceDetectors
from twinops.monitoring.events import BATCH_CONTENT_TYPE, REQUEST_TYPE, RESPONSE_TYPE
from twinops.monitoring.service import create_app

BATCH_HEADERS = {"content-type": BATCH_CONTENT_TYPE}


@pytest.fixture(scope="module")
def space() -> SpaceDetectors:
    return queries_space()


def _serve(space: SpaceDetectors, serve_app, limits: EventLimits | None = None) -> str:
    return serve_app(create_app(vectors_only_detector(space, limits=limits)))


def _structured(index: int, data: dict, event_type: str = REQUEST_TYPE) -> dict:
    return {"specversion": "1.0", "type": event_type, "source": "logger", "id": f"e{index}", "data": data}


def test_a_batched_delivery_is_tested_as_its_events_posted_one_by_one(space, serve_app, read_metric):
    rows = np.vstack([unit_vectors(BATCH, seed=5), unit_vectors(BATCH, seed=6, shift=0.8)])
    one_by_one = _serve(space, serve_app)
    replies = [reply.json() for reply in post_rows(one_by_one, rows)]

    batched = _serve(space, serve_app)
    first = [_structured(i, embedding_data(row)) for i, row in enumerate(rows[:BATCH])]
    # The second half carries its data base64-encoded, as the JSON format allows for any payload.
    second = [
        {
            **_structured(i, None),
            "data_base64": base64.b64encode(json.dumps(embedding_data(row)).encode()).decode(),
        }
        for i, row in enumerate(rows[BATCH:])
    ]
    for item in second:
        del item["data"]
    got = [
        httpx.post(batched + "/", headers=BATCH_HEADERS, content=json.dumps(part)).json()
        for part in (first, second)
    ]

    assert got == [replies[BATCH - 1], replies[-1]]
    assert [reply["data"]["is_drift"] for reply in got] == [0, 1]  # the shifted half drifts
    assert read_metric(batched, "twinops_drift_events_total", space="queries") == 2 * BATCH


def test_a_batch_with_one_bad_event_is_refused_whole_and_nothing_of_it_is_queued(
    space, serve_app, read_metric
):
    url = _serve(space, serve_app)
    items = [_structured(i, embedding_data(row)) for i, row in enumerate(unit_vectors(5, seed=7))]
    items[2]["data"]["inputs"][0]["data"][3] = float("nan")
    refused = httpx.post(url + "/", headers=BATCH_HEADERS, content=json.dumps(items))  # json writes NaN
    assert refused.status_code == 400
    assert refused.json()["error"] == "non_finite_embedding"
    assert refused.json()["detail"].startswith("event 2 of 5: inputs[0] ('e') row 0 holds NaN")
    assert read_metric(url, "twinops_drift_events_total", space="queries") is None

    answers = httpx.post(
        url + "/",
        headers=BATCH_HEADERS,
        content=json.dumps([items[0], _structured(9, embedding_data(unit_vectors(1, 8)[0]), RESPONSE_TYPE)]),
    )
    assert answers.status_code == 400 and answers.json()["error"] == "space_not_monitored"
    assert answers.json()["detail"].startswith("event 1 of 2: ")

    accepted = httpx.post(url + "/", headers=BATCH_HEADERS, content=json.dumps(items[:2]))
    assert accepted.status_code == 200
    assert accepted.json()["meta"] == {"pending": 2, "batch_size": BATCH, "accepted": 2}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[{", "the batch is not JSON"),
        (b'{"type": "x"}', "a non-empty JSON array of events"),
        (b"[]", "a non-empty JSON array of events"),
        (
            b'[{"specversion": "1.0", "type": "' + REQUEST_TYPE.encode() + b'", "id": "1", "data": {}}]',
            "event 0 of 1: ",
        ),
        (b"[1]", "event 0 of 1 is not a JSON object"),
    ],
)
def test_a_malformed_batch_is_a_400_that_says_what_is_wrong(space, serve_app, body, says):
    url = _serve(space, serve_app)
    reply = httpx.post(url + "/", headers=BATCH_HEADERS, content=body)
    assert reply.status_code == 400
    assert reply.json()["error"] == "malformed_cloudevent"
    assert says in reply.json()["detail"]


def test_a_batch_of_more_texts_than_a_delivery_may_carry_is_a_413(space, serve_app):
    url = _serve(space, serve_app, EventLimits(max_texts=4))
    items = [_structured(i, embedding_data(row)) for i, row in enumerate(unit_vectors(5, seed=9))]
    reply = httpx.post(url + "/", headers=BATCH_HEADERS, content=json.dumps(items))
    assert reply.status_code == 413
    assert reply.json()["error"] == "too_many_texts"
    assert "the batch carries 5 texts; at most 4 per delivery" in reply.json()["detail"]
