"""Deterministic identities: content hashes and UUIDs derived from them."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

# A fixed namespace so the same key gives the same UUID on every machine (Qdrant point ids).
TWINOPS_NAMESPACE = uuid.UUID("6f1c5a52-1d3e-4b7e-9a51-3c1b1f6f2a10")


def _canonical(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def content_hash(*parts: Any) -> str:
    """SHA-256 hex digest over the canonical form of ``parts`` (str, bytes or JSON-able)."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = _canonical(part)
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()


def drop_computed_fields(model_cls: type, data: Any) -> Any:
    """Let a model read its own dump back: computed fields (ids, hashes) are derived, not input."""
    computed = getattr(model_cls, "model_computed_fields", {})
    if isinstance(data, dict) and any(key in data for key in computed):
        return {key: value for key, value in data.items() if key not in computed}
    return data


def stable_uuid(*parts: Any) -> str:
    """A UUIDv5 string derived from ``parts``; equal inputs give equal ids."""
    return str(uuid.uuid5(TWINOPS_NAMESPACE, content_hash(*parts)))
