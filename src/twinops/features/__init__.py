"""The feature pipeline: warehouse documents → cleaned, gated, chunked, embedded features.

``run_features(job, settings)`` composes the stages; each stage is callable alone for the KFP
components: ``clean_and_gate`` → ``chunk_embed_load`` → ``materialize``. Imports are lazy so that
``import twinops.features`` stays cheap (torch, qdrant and feast load only when a stage runs).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "FeatureJob": "twinops.features.jobs",
    "FeatureRunSummary": "twinops.features.results",
    "GateResult": "twinops.features.results",
    "MaterializeSummary": "twinops.features.results",
    "clean_and_gate": "twinops.features.clean_gate",
    "chunk_embed_load": "twinops.features.load",
    "materialize": "twinops.features.feast_store",
    "run_features": "twinops.features.runner",
}

__all__ = [
    "FeatureJob",
    "FeatureRunSummary",
    "GateResult",
    "MaterializeSummary",
    "chunk_embed_load",
    "clean_and_gate",
    "materialize",
    "run_features",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'twinops.features' has no attribute {name!r}")
