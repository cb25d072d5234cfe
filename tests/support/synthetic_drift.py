"""Synthetic unit vectors and a calibrated evidently MMD over them: drift tests about the service's
plumbing (deliveries, processes), where no embedding model needs to run."""

from __future__ import annotations

import httpx
import numpy as np
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import SpaceDetectors, SpaceReference, fit_evidently
from twinops.monitoring.events import REQUEST_TYPE
from twinops.monitoring.service import DriftDetector

BATCH = 8
DIMENSION = 16


def unit_vectors(count: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """``count`` random unit vectors; a ``shift`` moves them off the reference's distribution."""
    rows = np.random.default_rng(seed).normal(size=(count, DIMENSION)) + shift
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def queries_space() -> SpaceDetectors:
    """The ``queries`` space over 200 vectors, with evidently's MMD calibrated for ``BATCH`` rows."""
    config = DriftConfig(
        batch_size=BATCH, calibration_draws=20, evidently_methods=("mmd",), reduced_dimension=8
    )
    reference = SpaceReference.fit("queries", unit_vectors(200, seed=1), config)
    return SpaceDetectors(reference, list(fit_evidently(reference, BATCH, config)))


def vectors_only_detector(
    space: SpaceDetectors, *, verdict_in_reply: bool = True, **options
) -> DriftDetector:
    """The online detector over ``space`` for events that carry their vectors (no embedder runs),
    answering a batch's last delivery with its verdict unless told not to; ``options`` are
    ``DriftDetector``'s (limits, a detectors' process, ...)."""
    return DriftDetector(
        {"queries": space},
        lambda texts: np.zeros((0, DIMENSION)),
        batch_size=BATCH,
        reference_id="synthetic",
        verdict_in_reply=verdict_in_reply,
        **options,
    )


def embedding_data(row: np.ndarray) -> dict:
    """One embedding as an event's data: a V2 FP32 input, as an embedder's logger sends it."""
    return {"inputs": [{"name": "e", "datatype": "FP32", "shape": [1, DIMENSION], "data": row.tolist()}]}


def post_rows(url: str, rows: np.ndarray) -> list[httpx.Response]:
    """One binary-mode request event per row, posted one after another; every reply."""
    replies = []
    for index, row in enumerate(rows):
        event = CloudEvent({"type": REQUEST_TYPE, "source": "logger", "id": f"e{index}"}, embedding_data(row))
        headers, body = to_binary(event)
        replies.append(httpx.post(url + "/", headers=dict(headers), content=body, timeout=60))
    return replies
