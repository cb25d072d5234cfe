"""What the InferenceService logger sends: CloudEvents in, texts (or embeddings) out, or a reason.

KServe's logger posts each request and each response as a CloudEvent (``ce-type``
``org.kubeflow.serving.inference.request`` / ``.response``), in binary mode (``ce-*`` headers,
the payload as the body) or structured mode (``application/cloudevents+json``, the payload in
``data``). ``parse_event`` reads both with the ``cloudevents`` SDK; ``parse_batch`` reads the
HTTP binding's batched mode (``application/cloudevents-batch+json``, a JSON array of structured
events, for a sender that gathers events before posting), all of them or none. Both pull out:

- requests: V1 ``instances`` (strings, or objects with ``text``/``question``/``prompt``), V2
  BYTES ``inputs``, OpenAI ``prompt`` and the last user turn of ``messages``;
- responses: V1 ``predictions``, V2 BYTES ``outputs``, OpenAI ``choices`` (text or message);
- embeddings already computed: V2 FP32 tensors and OpenAI ``data[].embedding`` lists; a NaN or
  infinite value (JSON's ``NaN``/``Infinity``, or a number past float32) is refused, naming its field:
  one would poison every statistic of the batch it lands in.

A request is the ``queries`` space, a response the ``answers`` space. Anything else is a
``RejectedEvent`` with a reason that the service counts; nothing here raises on bad input.
This module reads plain JSON (no kserve import): it also runs in ``.venv-drift``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPACE_OF_TYPE = {REQUEST_TYPE: "queries", RESPONSE_TYPE: "answers"}
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_TEXT_KEYS = ("text", "question", "prompt", "input", "query", "content")


@dataclass(frozen=True)
class LoggedEvent:
    """The texts or embeddings of one accepted event."""

    event_id: str
    event_type: str
    space: str
    source: str
    texts: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    inference_service: str | None = None

    @property
    def count(self) -> int:
        return len(self.embeddings) if self.embeddings is not None else len(self.texts)


@dataclass(frozen=True)
class RejectedEvent:
    reason: str  # short label (a Prometheus label value)
    detail: str


def parse_event(headers: dict[str, str], body: bytes) -> LoggedEvent | RejectedEvent:
    """One HTTP delivery of one event (binary or structured mode) → its texts/embeddings, or why it
    was rejected."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        event = from_http(lowered, body, data_unmarshaller=_json_or_bytes)
    except GenericException as error:
        return RejectedEvent("malformed_cloudevent", _first_line(error))
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        return RejectedEvent("malformed_cloudevent", _first_line(error))
    return _logged(event)


def is_batch(headers: dict[str, str]) -> bool:
    """Whether the delivery is in batched content mode (``application/cloudevents-batch+json``)."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return content_type.split(";", 1)[0].strip().lower() == BATCH_CONTENT_TYPE


def parse_batch(body: bytes) -> list[LoggedEvent] | RejectedEvent:
    """A batched-mode delivery (a JSON array of structured-mode events) → every event, or the first
    refusal, naming the event by its place: a batch is taken whole or not at all."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_dict

    try:
        items = _loads_json(body)
    except ValueError as error:
        return RejectedEvent("malformed_cloudevent", f"the batch is not JSON: {_first_line(error)}")
    if not isinstance(items, list) or not items:
        return RejectedEvent("malformed_cloudevent", "a batched delivery is a non-empty JSON array of events")
    events = []
    for index, item in enumerate(items):
        where = f"event {index} of {len(items)}"
        if not isinstance(item, dict):
            return RejectedEvent("malformed_cloudevent", f"{where} is not a JSON object")
        attributes = dict(item)
        if "data_base64" in attributes:
            attributes["data"] = _base64_data(attributes.pop("data_base64"))
        try:
            event = from_dict(attributes)
        except (GenericException, ValueError, TypeError) as error:
            return RejectedEvent("malformed_cloudevent", f"{where}: {_first_line(error)}")
        logged = _logged(event)
        if isinstance(logged, RejectedEvent):
            return RejectedEvent(logged.reason, f"{where}: {logged.detail}")
        events.append(logged)
    return events


def _base64_data(encoded: Any) -> Any:
    import base64
    import binascii

    try:
        return _json_or_bytes(base64.b64decode(encoded, validate=True))
    except (binascii.Error, TypeError, ValueError):
        return None  # refused below as data that is not a JSON object


def _logged(event: Any) -> LoggedEvent | RejectedEvent:  # noqa: PLR0911 (one return per reason)
    """A parsed CloudEvent's texts or embeddings, or why it is refused."""
    event_type = event["type"]
    space = SPACE_OF_TYPE.get(event_type)
    if space is None:
        return RejectedEvent(
            "unsupported_type", f"ce-type {event_type!r} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}"
        )
    data = _json_data(event.data)
    if data is None:
        return RejectedEvent("not_json", "the event data is not a JSON object")
    base = {
        "event_id": str(event["id"]),
        "event_type": event_type,
        "space": space,
        "source": str(event["source"]),
        "inference_service": event.get("inferenceservicename"),
    }
    try:
        embeddings = extract_embeddings(data)
    except NonFiniteEmbedding as error:
        return RejectedEvent("non_finite_embedding", str(error))
    except ValueError as error:
        return RejectedEvent("bad_embedding", str(error))
    if embeddings is not None:
        return LoggedEvent(**base, embeddings=embeddings)
    texts = extract_texts(data, response=space == "answers")
    if not texts:
        return RejectedEvent(
            "no_text", "no text found in V1 instances/predictions, V2 BYTES or OpenAI fields"
        )
    return LoggedEvent(**base, texts=texts)


def _loads_json(data: bytes | bytearray | str) -> Any:
    """JSON with orjson (a 384-d embedding's floats parse about 7x faster than with ``json``), and
    with ``json`` what orjson refuses but JSON senders write (``NaN``, ``Infinity``), so that such a
    value is refused by the field it is in. ``ValueError`` when it is not JSON."""
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)


def _json_or_bytes(data: bytes | str | None) -> Any:
    """The event's data as JSON, else as it came, for ``_json_data`` to refuse."""
    try:
        return _loads_json(data) if data else data
    except ValueError:
        return data


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _json_data(data: Any) -> dict | None:
    if isinstance(data, (bytes, bytearray, str)):
        try:
            data = _loads_json(data)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _text_of(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in _TEXT_KEYS:
            value = item.get(key)
            if isinstance(value, str):
                return value
        if isinstance(item.get("messages"), list):
            return _last_user_turn(item["messages"])
    return None


def _content_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text parts count."""
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return content if isinstance(content, str) else ""


def _last_user_turn(messages: list) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content")) or None
    return None


def _bytes_tensors(tensors: Any) -> list[str]:
    texts: list[str] = []
    for tensor in tensors if isinstance(tensors, list) else []:
        if isinstance(tensor, dict) and tensor.get("datatype") == "BYTES":
            texts += [_decoded(value) for value in _flatten(tensor.get("data", []))]
    return texts


def _decoded(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _flatten(values: Any) -> list:
    if isinstance(values, list):
        return [leaf for value in values for leaf in _flatten(value)]
    return [values]


def extract_texts(data: dict, *, response: bool = False) -> list[str]:
    """The non-empty texts of a V1, V2 or OpenAI request (or, with ``response``, reply) body."""
    if response:
        found = [_text_of(item) for item in data.get("predictions", []) or []]
        found += _bytes_tensors(data.get("outputs"))
        for choice in data.get("choices", []) or []:
            if isinstance(choice, dict):
                message = choice.get("message") or {}
                found.append(choice.get("text") or _content_text(message.get("content")))
    else:
        found = [_text_of(item) for item in data.get("instances", []) or []]
        found += _bytes_tensors(data.get("inputs"))
        prompt = data.get("prompt")
        found += prompt if isinstance(prompt, list) else [prompt]
        if isinstance(data.get("messages"), list):
            found.append(_last_user_turn(data["messages"]))
    return [text.strip() for text in found if isinstance(text, str) and text.strip()]


class NonFiniteEmbedding(ValueError):
    """An embedding holds NaN or an infinity."""


def _tensor_values(data: Any) -> np.ndarray:
    """A tensor's values, flat, as float32 (past float32 becomes inf, refused by the caller).

    numpy reads a regular nested list in C; only a ragged one goes value by value through
    ``_flatten`` (per value in Python, that was most of the cost of a 384-d embedding event).
    """
    with np.errstate(over="ignore"):
        try:
            return np.asarray(data, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            return np.asarray(_flatten(data), dtype=np.float32)


def extract_embeddings(data: dict) -> np.ndarray | None:
    """Vectors carried by the event (V2 FP32 tensors, OpenAI embeddings); None when it carries none.

    Ragged or non-numeric vectors raise ``ValueError``, non-finite ones ``NonFiniteEmbedding``
    naming the field (the event is rejected, not the service).
    """
    rows: list = []
    fields: list[str] = []  # where each row came from, to name the one that is not finite
    for key in ("inputs", "outputs"):
        for index, tensor in enumerate(data.get(key, []) or []):
            if isinstance(tensor, dict) and tensor.get("datatype") in ("FP32", "FP64"):
                shape = tensor.get("shape") or []
                values = _tensor_values(tensor.get("data", []))
                width = shape[-1] if len(shape) >= 2 else len(values)
                if not width or values.size % width:
                    raise ValueError(
                        f"tensor {tensor.get('name')!r}: {values.size} values do not fill shape {shape}"
                    )
                tensor_rows = list(values.reshape(-1, width))
                rows += tensor_rows
                field_name = f"{key}[{index}] ({tensor.get('name')!r})"
                fields += [f"{field_name} row {row}" for row in range(len(tensor_rows))]
    for index, item in enumerate(data.get("data", []) or []):
        if isinstance(item, dict) and isinstance(item.get("embedding"), list):
            rows.append(item["embedding"])
            fields.append(f"data[{index}].embedding")
    if not rows:
        return None
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise ValueError(f"embeddings of different lengths {sorted(widths)} in one event")
    try:
        with np.errstate(over="ignore"):
            vectors = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"embeddings are not numbers: {_first_line(error)}") from error
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise NonFiniteEmbedding(
            f"{fields[first]} holds NaN or infinite values ({int((~finite).sum())} of {len(vectors)} rows)"
        )
    return vectors
