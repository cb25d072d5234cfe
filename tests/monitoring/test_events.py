"""CloudEvents from KServe's logger: both modes, the three payload shapes, and rejected input."""

from __future__ import annotations

import json

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from twinops.monitoring.events import REQUEST_TYPE, RESPONSE_TYPE, LoggedEvent, RejectedEvent, parse_event


def _event(data, event_type: str = REQUEST_TYPE) -> CloudEvent:
    return CloudEvent({"type": event_type, "source": "http://twin-rag.ns/", "id": "abc-1"}, data)


@pytest.mark.parametrize("mode", [to_binary, to_structured])
@pytest.mark.parametrize(
    ("data", "texts"),
    [
        (
            {"instances": ["How do vector databases work?", {"question": "And Kafka?"}]},
            ["How do vector databases work?", "And Kafka?"],
        ),
        (
            {"inputs": [{"name": "question", "datatype": "BYTES", "shape": [2], "data": ["one", "two"]}]},
            ["one", "two"],
        ),
        ({"model": "twin-llm", "prompt": "Write about Rust."}, ["Write about Rust."]),
        (
            {
                "model": "twin-rag",
                "messages": [
                    {"role": "system", "content": "You are a twin."},
                    {"role": "user", "content": "first question"},
                    {"role": "assistant", "content": "an answer"},
                    {"role": "user", "content": [{"type": "text", "text": "the last question"}]},
                ],
            },
            ["the last question"],
        ),
    ],
)
def test_request_texts_in_both_modes(mode, data, texts):
    headers, body = mode(_event(data))
    event = parse_event(dict(headers), body)
    assert isinstance(event, LoggedEvent)
    assert (event.space, event.texts, event.event_id) == ("queries", texts, "abc-1")


def test_response_texts_go_to_the_answers_space():
    data = {"choices": [{"message": {"role": "assistant", "content": "An answer in my voice."}}]}
    headers, body = to_structured(_event(data, RESPONSE_TYPE))
    event = parse_event(dict(headers), body)
    assert isinstance(event, LoggedEvent)
    assert (event.space, event.texts) == ("answers", ["An answer in my voice."])


def test_embeddings_are_taken_as_they_come():
    data = {
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]
    }
    headers, body = to_binary(_event(data))
    event = parse_event(dict(headers), body)
    assert isinstance(event, LoggedEvent)
    assert event.embeddings.shape == (2, 3)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"content-type": "application/json"}, b'{"instances": ["x"]}', "malformed_cloudevent"),
        ({"content-type": "application/cloudevents+json"}, b"{not json", "malformed_cloudevent"),
        (
            {"ce-specversion": "1.0", "ce-type": REQUEST_TYPE, "ce-source": "s", "ce-id": "1",
             "content-type": "application/json"},
            b'{"instances": []}',
            "no_text",
        ),
        (
            {"ce-specversion": "1.0", "ce-type": "com.example.other", "ce-source": "s", "ce-id": "1"},
            b"{}",
            "unsupported_type",
        ),
        (
            {"ce-specversion": "1.0", "ce-type": REQUEST_TYPE, "ce-source": "s", "ce-id": "1",
             "content-type": "application/json"},
            json.dumps({"data": [{"embedding": [1, 2]}, {"embedding": [1, 2, 3]}]}).encode(),
            "bad_embedding",
        ),
    ],
)  # fmt: skip
def test_bad_events_are_rejected_with_a_reason(headers, body, reason):
    event = parse_event(headers, body)
    assert isinstance(event, RejectedEvent)
    assert event.reason == reason and event.detail


_CE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-type": REQUEST_TYPE,
    "ce-source": "s",
    "ce-id": "1",
    "content-type": "application/json",
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Python's json reads the NaN and Infinity literals a careless client writes.
        (b'{"data": [{"embedding": [0.1, 0.2]}, {"embedding": [NaN, NaN]}]}', "data[1].embedding"),
        (b'{"data": [{"embedding": [Infinity, 0.2]}]}', "data[0].embedding"),
        (b'{"data": [{"embedding": [1e39, 0.2]}]}', "data[0].embedding"),  # past float32
        (
            b'{"outputs": [{"name": "embedding", "datatype": "FP32", "shape": [2, 2],'
            b' "data": [0.1, 0.2, 0.3, "nan"]}]}',
            "outputs[0] ('embedding') row 1",
        ),
    ],
)
def test_a_non_finite_embedding_is_refused_naming_its_field(body, field):
    event = parse_event(_CE_HEADERS, body)
    assert isinstance(event, RejectedEvent)
    assert event.reason == "non_finite_embedding"
    assert event.detail.startswith(field)
