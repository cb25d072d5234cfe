"""Pipeline parameters from ``--param key=value``: parsed, checked against the pipeline's inputs
and converted to the declared types, each problem as one clear line."""

from __future__ import annotations

import json
from typing import Any

from twinops.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r} is not key=value: write e.g. --param author='Ada Quill'")
        params[key.strip()] = value
    return params


_EXPECTED = {
    "Integer": "an integer",
    "Float": "a number",
    "Boolean": "true or false",
    "List": "a JSON list or comma-separated values",
    "Dict": 'a JSON object like {"key": 1}',
}


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ValueError(raw)
    return lowered in _TRUE


def _list(raw: str) -> list:
    if not raw.strip().startswith("["):
        return [item.strip() for item in raw.split(",") if item.strip()]
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError(raw)
    return value


def _dict(raw: str) -> dict:
    value = json.loads(raw or "{}")
    if not isinstance(value, dict):
        raise ValueError(raw)
    return value


_CONVERTERS = {"Integer": int, "Float": float, "Boolean": _boolean, "List": _list, "Dict": _dict}


def _convert(name: str, kind: str, raw: str) -> Any:
    converter = _CONVERTERS.get(kind)
    if converter is None:
        return raw
    try:
        return converter(raw)
    except (ValueError, json.JSONDecodeError) as error:
        raise ConfigError(f"--param {name}={raw!r} is not {_EXPECTED[kind]}: fix the value") from error


def coerce(pipeline: Any, raw: dict[str, str]) -> dict[str, Any]:
    """``raw`` converted to the types ``pipeline`` declares; unknown names are one clear line."""
    inputs = pipeline.component_spec.inputs or {}
    unknown = sorted(set(raw) - set(inputs))
    if unknown:
        raise ConfigError(
            f"pipeline {pipeline.name.replace('-', '_')} takes no parameter {', '.join(unknown)}: "
            f"it takes {', '.join(inputs) or 'none'}"
        )
    return {name: _convert(name, str(inputs[name].type), value) for name, value in raw.items()}


def describe(pipeline: Any) -> dict[str, dict[str, Any]]:
    """The pipeline's parameters with their types and defaults (for ``twinops pipeline list``)."""
    return {
        name: {"type": str(spec.type), "default": spec.default, "description": spec.description}
        for name, spec in (pipeline.component_spec.inputs or {}).items()
    }
