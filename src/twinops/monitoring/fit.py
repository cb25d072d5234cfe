"""Fitting the detectors of a reference: what training runs after registering, and what serving loads.

``fit_reference(settings, "3")`` (a twin-llm version, ``latest`` or a dataset version id) embeds the
reference, fits the reducers and calibrates the detectors for the online batch size, and saves them
beside the model version (``monitoring.reference``). The training pipeline calls it right after
registering a version; ``twinops drift fit`` does the same by hand, and ``drift serve`` reads the
saved artifact back (fitting it first when it is missing).
"""

from __future__ import annotations

from typing import Literal

from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import SpaceDetectors
from twinops.monitoring.reference import DriftReference, open_reference, resolve_reference
from twinops.settings import Settings

Backend = Literal["evidently", "alibi", "both"]


def batch_size_for(space_reference, batch_size: int) -> int:
    """The batch size a space's detectors are calibrated for: at most half its reference, so a
    calibration batch and a tested batch can both be drawn from it."""
    return min(batch_size, len(space_reference.reduced) // 2)


def space_detectors(
    reference: DriftReference, space: str, config: DriftConfig, *, batch_size: int, backend: Backend
) -> SpaceDetectors:
    """The detectors of one space for batches of ``batch_size``: evidently's (calibrated once and
    saved), alibi's (fitted once and saved), or both. The one place a space's detectors are assembled,
    for the online detector, ``drift fit`` and the batch report alike."""
    from twinops.monitoring.alibi import alibi_detectors

    space_reference = reference.space(space)
    if backend == "alibi":
        detectors = SpaceDetectors(reference=space_reference, detectors=[])
    else:
        detectors = reference.detectors(space, batch_size_for(space_reference, batch_size), config)
    if backend in ("alibi", "both"):
        detectors.detectors += alibi_detectors(reference.folder / "spaces" / space, space_reference, config)
    return detectors


def fit_detectors(
    reference: DriftReference, config: DriftConfig, *, batch_size: int, backend: Backend = "evidently"
) -> dict[str, SpaceDetectors]:
    """Every space's detectors for batches of ``batch_size`` (saved calibrations are reused)."""
    from twinops.monitoring.alibi import require_alibi

    if backend != "evidently":
        require_alibi()  # before any space is fitted
    return {
        space: space_detectors(reference, space, config, batch_size=batch_size, backend=backend)
        for space in reference.spaces
    }


def fit_reference(
    settings: Settings,
    reference: str,
    config: DriftConfig,
    *,
    embedder=None,
    backend: Backend = "evidently",
    db=None,
    twin: str | None = None,
) -> tuple[DriftReference, dict[str, SpaceDetectors]]:
    """Resolve, embed, fit and save the reference ``reference`` (a version of ``twin``, default
    twin-llm); return it with its detectors."""
    from twinops.features.embedding import open_embedder

    data = resolve_reference(settings, reference, db=db, twin=twin)
    embedder = embedder or open_embedder(settings)
    fitted = open_reference(settings, data, embedder, config)
    return fitted, fit_detectors(fitted, config, batch_size=config.batch_size, backend=backend)
