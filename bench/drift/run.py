"""Drift benchmark: how detection scales with the reference, and what the online detector costs.

- Detection time of each evidently method (calibrated, ``twinops.monitoring.detectors``) and, in
  ``.venv-drift``, of alibi-detect's MMD/LSDD, for a reference of 1k and of 10k embeddings (384-d,
  reduced to 32): the fit (calibration draws) and one 32-row batch, with the 10k/1k ratio;
- events per second through the online detector (``POST /`` CloudEvents over HTTP on 127.0.0.1,
  one event per row, carrying its embedding so no model runs) against the raw detector call on the
  same batches (``SpaceDetectors.predict``), as a ratio: what CloudEvents parsing, batching and HTTP
  add to the test itself (about 6 ms per event on 127.0.0.1).

The embeddings are synthetic (unit vectors around a few topic centres), so the figures measure cost,
not quality; the quality figures are in tests/monitoring.

    .venv/bin/python bench/drift/run.py [--quick]      (.venv-drift/bin/python adds alibi-detect)
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np

from twinops.monitoring.alibi import alibi_available, fit_alibi
from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import SpaceDetectors, SpaceReference, fit_evidently
from twinops.monitoring.service import DriftDetector, create_app
from twinops.services.process import free_port

DIMENSION = 384
BATCH = 32


def embeddings(count: int, seed: int, topics: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(topics, DIMENSION))
    rows = centres[rng.integers(0, topics, count)] + rng.normal(scale=1.5, size=(count, DIMENSION))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def scaling(sizes: list[int], draws: int) -> dict:
    config = DriftConfig(batch_size=BATCH, calibration_draws=draws, alibi_permutations=draws)
    batch = embeddings(BATCH, seed=99)
    figures: dict = {}
    for size in sizes:
        reference = SpaceReference.fit("queries", embeddings(size, seed=size), config)
        started = time.perf_counter()
        detectors = list(fit_evidently(reference, BATCH, config))
        fit_seconds = time.perf_counter() - started
        if alibi_available():
            started = time.perf_counter()
            detectors += fit_alibi(reference, config)
            fit_seconds += time.perf_counter() - started
        space = SpaceDetectors(reference, detectors)
        reduced = reference.reducer.transform(batch)
        per_detector = {}
        for detector in space.detectors:
            started = time.perf_counter()
            detector.predict(reduced)
            per_detector[detector.name] = round(time.perf_counter() - started, 4)
        figures[size] = {"fit_seconds": round(fit_seconds, 2), "predict_seconds": per_detector}
        print(
            f"reference {size:>6}: fit {fit_seconds:7.2f} s ({draws} draws); predict {per_detector}",
            flush=True,
        )
    low, high = min(sizes), max(sizes)
    figures["ratio_predict"] = {
        name: round(
            figures[high]["predict_seconds"][name] / max(figures[low]["predict_seconds"][name], 1e-6), 1
        )
        for name in figures[low]["predict_seconds"]
    }
    print(f"predict time {high}/{low}: {figures['ratio_predict']}")
    return figures


def throughput(batches: int) -> dict:
    import httpx
    import uvicorn
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    config = DriftConfig(batch_size=BATCH, calibration_draws=20, evidently_methods=("mmd", "distance"))
    reference = SpaceReference.fit("queries", embeddings(1000, seed=1), config)
    space = SpaceDetectors(reference, list(fit_evidently(reference, BATCH, config)))
    rows = embeddings(BATCH * batches, seed=2)

    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        space.predict(rows[start : start + BATCH])
    raw = len(rows) / (time.perf_counter() - started)

    detector = DriftDetector(
        {"queries": space}, lambda texts: np.zeros((0, DIMENSION)), batch_size=BATCH, reference_id="bench"
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(detector), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    bodies = []
    for index, row in enumerate(rows):
        data = {
            "inputs": [
                {"name": "embedding", "datatype": "FP32", "shape": [1, DIMENSION], "data": row.tolist()}
            ]
        }
        event = CloudEvent(
            {"type": "org.kubeflow.serving.inference.request", "source": "bench", "id": str(index)}, data
        )
        bodies.append(to_binary(event))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        started = time.perf_counter()
        for headers, body in bodies:
            client.post("/", headers=dict(headers), content=body).raise_for_status()
        served = len(rows) / (time.perf_counter() - started)
    server.should_exit = True
    thread.join(timeout=10)
    figures = {"raw_events_per_second": round(raw, 1), "service_events_per_second": round(served, 1)}
    figures["ratio"] = round(served / raw, 2)
    print(f"online detector {served:.0f} events/s vs raw detector {raw:.0f} rows/s: ratio {figures['ratio']}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer calibration draws and batches.")
    args = parser.parse_args()
    # The throughput first: the 10k reference's kernels leave the process large and slow.
    throughput_figures = throughput(5 if args.quick else 20)
    results = {
        "throughput": throughput_figures,
        "scaling": scaling([1000, 10000], 10 if args.quick else 30),
        "alibi": alibi_available(),
    }
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
