"""V1 and V2 (Open Inference Protocol) payloads of the twinops models: text in BYTES tensors.

Each model declares its tensors once (``TensorSpec``); the same specs answer the model metadata
route and check every request (name, datatype, shape), so a wrong tensor is a 400 naming the
expected one, over REST and gRPC alike. ``DataPlane`` answers a binary V2 request whose JSON header
is not one with a 400 too (kserve's own decoder indexes it blindly and answers 500).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane as KServeDataPlane
from pydantic import BaseModel, ValidationError

from twinops.errors import first_problem
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.types import SamplingParams


class TensorSpec(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    optional: bool = False

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class DataPlane(KServeDataPlane):
    """kserve's data plane, where a binary V2 request (JSON header + raw tensors) that does not parse
    as one is bad input: kserve 0.21 reads its header with plain indexing, so a header without
    ``inputs`` (or an input without ``name``, ``shape`` or ``datatype``) or a length that is not a
    number would be a KeyError, TypeError or ValueError, and a 500."""

    def decode_inference_request(self, body, headers, model_name):
        length = (headers or {}).get(INFERENCE_CONTENT_LENGTH_HEADER)
        if (
            isinstance(body, bytes)
            and length is not None
            and not (length.isdigit() and int(length) <= len(body))
        ):
            raise BadRequest(
                f"{INFERENCE_CONTENT_LENGTH_HEADER} is {length!r}: send the byte length of the JSON "
                f"header that starts the body (at most its {len(body)} bytes)"
            )
        try:
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            what = f"has no {error.args[0]!r}" if isinstance(error, KeyError) else f"is malformed ({error})"
            raise BadRequest(
                f"the JSON header of the binary request {what}: send "
                '{"inputs": [{"name", "shape", "datatype", "parameters": {"binary_data_size"}}]}'
            ) from error


def _plain(value: Any) -> Any:
    """gRPC parameters arrive as InferParameter messages; REST ones as plain JSON values."""
    for field in ("string_param", "int64_param", "double_param", "bool_param", "uint64_param"):
        if hasattr(value, "HasField") and value.HasField(field):
            return getattr(value, field)
    return value


def request_parameters(request: InferRequest) -> dict[str, Any]:
    return {key: _plain(value) for key, value in (request.parameters or {}).items()}


def check_inputs(request: InferRequest, specs: Sequence[TensorSpec]) -> None:
    """Every input is declared and every required one is present."""
    declared = {spec.name for spec in specs}
    expected = ", ".join(f"{s.name} ({s.datatype} {s.shape})" for s in specs)
    for infer_input in request.inputs:
        if infer_input.name not in declared:
            raise BadRequest(f"unknown input tensor {infer_input.name!r}: this model takes {expected}")
    sent = {infer_input.name for infer_input in request.inputs}
    for spec in specs:
        if not spec.optional and spec.name not in sent:
            raise BadRequest(f"input tensor {spec.name!r} is missing: this model takes {expected}")


def texts(request: InferRequest, spec: TensorSpec) -> list[str] | None:
    """The strings of BYTES input ``spec`` (None when an optional input is absent)."""
    infer_input = request.get_input_by_name(spec.name)
    if infer_input is None:
        if spec.optional:
            return None
        raise BadRequest(f"input tensor {spec.name!r} is missing")
    if infer_input.datatype != spec.datatype:
        raise BadRequest(
            f"input tensor {spec.name!r} has datatype {infer_input.datatype}: send {spec.datatype}"
        )
    shape = list(infer_input.shape)
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise BadRequest(f"input tensor {spec.name!r} has shape {shape}: send shape {spec.shape}")
    try:
        values = infer_input.as_numpy().reshape(-1).tolist()
    except (ValueError, TypeError) as error:
        raise BadRequest(f"input tensor {spec.name!r}: its data does not match shape {shape}") from error
    decoded = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    if not decoded:
        raise BadRequest(f"input tensor {spec.name!r} is empty: send at least one string")
    return decoded


def bytes_output(name: str, values: Sequence[str]) -> InferOutput:
    output = InferOutput(name=name, shape=[len(values)], datatype="BYTES")
    output.set_data_from_numpy(
        np.array([v.encode("utf-8") for v in values], dtype=np.object_), binary_data=False
    )
    return output


def fp32_output(name: str, values: Sequence[float] | np.ndarray) -> InferOutput:
    array = np.asarray(values, dtype=np.float32)
    output = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
    output.set_data_from_numpy(array, binary_data=False)
    return output


def response(request: InferRequest, model_name: str, outputs: list[InferOutput]) -> InferResponse:
    return InferResponse(
        response_id=request.id or "",
        model_name=model_name,
        infer_outputs=outputs,
        use_binary_outputs=request.use_binary_outputs,
    )


def sampling_params(
    raw: dict[str, Any], default_max_tokens: int, default_temperature: float = 0.0
) -> SamplingParams:
    """Generation settings from V2 request parameters or a V1 instance (``max_tokens``, ...)."""
    values: dict[str, Any] = {}
    for key, default, kind in (
        ("max_tokens", default_max_tokens, int),
        ("temperature", default_temperature, float),
        ("top_p", 1.0, float),
    ):
        try:
            values[key] = kind(raw.get(key, default))
        except (ValueError, TypeError) as error:  # the message names the parameter, not int()'s complaint
            raise BadRequest(f"bad generation parameter {key}={raw.get(key)!r}: send a number") from error
    try:
        return SamplingParams(**values)
    except ValidationError as error:
        raise BadRequest(f"bad generation parameter {first_problem(error).line()}") from error


def v1_instances(payload: Any) -> list:
    """The ``instances`` list of a V1 ``:predict`` body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise BadRequest('a V1 request is {"instances": [...]}: the "instances" list is missing')
    if not payload["instances"]:
        raise BadRequest('"instances" is empty: send at least one instance')
    return payload["instances"]
