"""alibi-detect's ``MMDDrift`` and ``LSDDDrift`` (PyTorch backend), in ``.venv-drift`` only.

alibi-detect pins numpy<2 and transformers<5, so it lives in an environment of its own
(``make .venv-drift/.installed``, image ``images/drift``); nothing in the core environment imports
this module's detectors. Its releases since 0.11.5 are under the Business Source License 1.1
(production use needs a licence from Seldon); the evidently detectors are the Apache-2.0 default.

The detectors test the reduced reference of a space (``SpaceReference``: the same reducer the
evidently detectors use, so both read one artifact) with permutation p-values. They are saved with
alibi-detect's own ``save_detector`` under ``<reference>/spaces/<space>/alibi/<method>/`` and read
back with ``load_detector``; they do not depend on the batch size.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twinops.errors import ConfigError
from twinops.monitoring.config import AlibiMethod, DriftConfig
from twinops.monitoring.detectors import DriftResult, SpaceReference

LICENSE_NOTE = "alibi-detect >= 0.11.5 is under the Business Source License 1.1"


def alibi_available() -> bool:
    try:
        import alibi_detect  # noqa: F401
    except ImportError:
        return False
    return True


def require_alibi() -> None:
    if not alibi_available():
        raise ConfigError(
            "alibi-detect is not installed in this environment: run the alibi backend from .venv-drift "
            "(`make .venv-drift/.installed`, then `.venv-drift/bin/twinops drift serve --backend alibi`) "
            f"or use --backend evidently ({LICENSE_NOTE})"
        )


@dataclass
class AlibiDetector:
    method: AlibiMethod
    space: str
    detector: Any

    @property
    def name(self) -> str:
        return f"alibi-{self.method}"

    def predict(self, embeddings: np.ndarray) -> DriftResult:
        prediction = self.detector.predict(np.asarray(embeddings, dtype=np.float32))["data"]
        return DriftResult(
            detector=self.name,
            space=self.space,
            is_drift=bool(prediction["is_drift"]),
            distance=float(prediction["distance"]),
            p_val=float(prediction["p_val"]),
            threshold=float(prediction["threshold"]),
            batch_size=len(embeddings),
        )


def _build(method: AlibiMethod, reference: np.ndarray, config: DriftConfig):
    from alibi_detect.cd import LSDDDrift, MMDDrift

    kind = {"mmd": MMDDrift, "lsdd": LSDDDrift}[method]
    return kind(
        reference,
        backend="pytorch",
        p_val=config.p_val,
        n_permutations=config.alibi_permutations,
        device="cpu",
    )


def fit_alibi(reference: SpaceReference, config: DriftConfig) -> list[AlibiDetector]:
    require_alibi()
    return [
        AlibiDetector(method, reference.space, _build(method, reference.reduced, config))
        for method in config.alibi_methods
    ]


def alibi_detectors(folder: Path, reference: SpaceReference, config: DriftConfig) -> list[AlibiDetector]:
    """The saved detectors of this space (``folder``), fitted and saved first when missing."""
    from alibi_detect.saving import load_detector, save_detector

    require_alibi()
    detectors = []
    for method in config.alibi_methods:
        path = folder / "alibi" / method
        detector = None
        if path.exists():
            with contextlib.suppress(Exception):  # a copy saved by another alibi version is refitted
                detector = load_detector(str(path))
        # alibi wraps the backend's detector (``_detector``), which holds the p-value threshold.
        if (
            detector is None
            or getattr(getattr(detector, "_detector", detector), "p_val", None) != config.p_val
        ):
            detector = _build(method, reference.reduced, config)
            try:
                save_detector(detector, str(path))
            except Exception as error:  # the detector works unsaved; the next start fits it again
                logging.getLogger(__name__).warning("could not save the alibi %s detector: %s", method, error)
        detectors.append(AlibiDetector(method, reference.space, detector))
    return detectors
