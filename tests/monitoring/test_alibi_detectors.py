"""alibi-detect's MMDDrift and LSDDDrift (PyTorch backend) on the reduced reference, in .venv-drift.

The core environment skips this module (alibi-detect pins numpy<2 and transformers<5); `make test`
runs it with .venv-drift/bin/python.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("alibi_detect", reason="alibi-detect lives in .venv-drift (make .venv-drift/.installed)")
import torch

from twinops.monitoring.alibi import alibi_detectors, fit_alibi
from twinops.monitoring.detectors import SpaceDetectors, SpaceReference

pytestmark = pytest.mark.slow

REPEATS = 10
FPR_BOUND = 0.3  # p_val 0.05 aimed at; 3 of 10 would already be far off


@pytest.fixture(scope="module")
def reference(drift_vectors, drift_config) -> SpaceReference:
    return SpaceReference.fit("queries", drift_vectors["reference"], drift_config)


def _batch(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    return vectors[np.random.default_rng(seed).choice(len(vectors), size=size, replace=False)]


# With 32 rows in 32 projected dimensions LSDD has little power: it misses the topic shift and, in
# some draws, the language one (p 0.1-0.6); MMD is the detector relied on, LSDD only for length.
@pytest.mark.parametrize(
    ("shift", "expected"),
    [
        ("topic", {"alibi-mmd"}),
        ("language", {"alibi-mmd"}),
        ("length", {"alibi-mmd", "alibi-lsdd"}),
    ],
)
def test_mmd_and_lsdd_detect_a_planted_shift(reference, drift_vectors, drift_config, shift, expected):
    torch.manual_seed(0)  # LSDD's kernel centres and the permutations are drawn with torch
    detectors = SpaceDetectors(reference, list(fit_alibi(reference, drift_config)))
    results = detectors.predict(_batch(drift_vectors[shift], drift_config.batch_size, seed=1))
    assert {r.detector for r in results} == {"alibi-mmd", "alibi-lsdd"}
    assert all(r.threshold == drift_config.p_val and r.is_drift == (r.p_val <= r.threshold) for r in results)
    assert {r.detector for r in results if r.is_drift} >= expected, results


def test_same_distribution_false_positive_rate(reference, drift_vectors, drift_config):
    detectors = SpaceDetectors(reference, list(fit_alibi(reference, drift_config)))
    flagged = {"alibi-mmd": 0, "alibi-lsdd": 0}
    for seed in range(REPEATS):
        for result in detectors.predict(
            _batch(drift_vectors["same"], drift_config.batch_size, seed=100 + seed)
        ):
            flagged[result.detector] += int(result.is_drift)
    rates = {name: count / REPEATS for name, count in flagged.items()}
    print(f"alibi false positive rate at p_val={drift_config.p_val} over {REPEATS} batches: {rates}")
    assert all(rate <= FPR_BOUND for rate in rates.values()), rates


def test_detectors_are_saved_and_read_back(tmp_path, reference, drift_vectors, drift_config):
    first = alibi_detectors(tmp_path, reference, drift_config)
    assert {p.name for p in (tmp_path / "alibi").iterdir()} == set(drift_config.alibi_methods)
    again = alibi_detectors(tmp_path, reference, drift_config)
    batch = reference.reducer.transform(_batch(drift_vectors["topic"], drift_config.batch_size, seed=2))
    for before, after in zip(first, again, strict=True):
        assert before.name == after.name
        assert after.predict(batch).threshold == drift_config.p_val
        if before.method == "mmd":  # LSDD draws new kernel centres when it is rebuilt; MMD's kernel is saved
            assert before.predict(batch).distance == pytest.approx(after.predict(batch).distance, rel=0.1)


def test_the_alibi_detectors_test_in_a_process_of_their_own(reference, drift_vectors, drift_config):
    """``twinops drift serve --backend alibi`` tests batches in ``DetectorsProcess``: LSDD keeps a
    lambda that pickle refuses, so the detectors travel with cloudpickle, and the child's verdict
    on the planted shift is the one found here."""
    from twinops.monitoring.isolation import DetectorsProcess

    detectors = SpaceDetectors(reference, list(fit_alibi(reference, drift_config)))
    batch = _batch(drift_vectors["length"], drift_config.batch_size, seed=1)
    with DetectorsProcess({"queries": detectors}) as detectors_process:
        isolated = detectors_process.predict("queries", batch)
    assert {r.detector for r in isolated} == {"alibi-mmd", "alibi-lsdd"}
    assert next(r for r in isolated if r.detector == "alibi-mmd").is_drift
