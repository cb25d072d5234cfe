"""evidently's embedding drift methods with calibrated p-values: planted shifts found, no shift not."""

from __future__ import annotations

import numpy as np
import pytest

from twinops.errors import ConfigError
from twinops.monitoring.detectors import (
    Reducer,
    SpaceDetectors,
    SpaceReference,
    fit_evidently,
    load_calibration,
    save_calibration,
)

pytestmark = pytest.mark.slow  # the bundled MiniLM embeds the generated questions

# Same-distribution batches measured for the false positive rate: enough that its 95% interval is
# a few points wide (0 of 200 gives [0, 0.018]).
FPR_BATCHES = 200


@pytest.fixture(scope="module")
def fitted(drift_vectors, drift_config) -> SpaceDetectors:
    reference = SpaceReference.fit("queries", drift_vectors["reference"], drift_config)
    return SpaceDetectors(reference, list(fit_evidently(reference, drift_config.batch_size, drift_config)))


def _batch(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).choice(len(vectors), size=size, replace=False)
    return vectors[rows]


BATCHES = 5


@pytest.mark.parametrize("shift", ["topic", "language", "length"])
def test_a_planted_shift_is_detected(fitted, drift_vectors, drift_config, shift):
    """MMD flags every shifted batch; each of evidently's other methods flags most of them."""
    flagged: dict[str, int] = {}
    for seed in range(BATCHES):
        for result in fitted.predict(_batch(drift_vectors[shift], drift_config.batch_size, seed=seed)):
            flagged[result.detector] = flagged.get(result.detector, 0) + int(result.is_drift)
            assert result.threshold == drift_config.p_val
            assert result.is_drift == (result.p_val <= drift_config.p_val)
    assert set(flagged) == {f"evidently-{m}" for m in drift_config.evidently_methods}
    assert flagged["evidently-mmd"] == BATCHES, flagged
    assert all(count >= 3 for count in flagged.values()), flagged


def test_the_false_positive_rate_is_at_most_p_val(fitted, drift_vectors, drift_config):
    """Same-distribution batches (held out from the reference) drift at no more than the configured
    ``p_val``: the Clopper-Pearson 95% interval of each detector's measured rate must reach down to
    ``p_val`` or below (a detector that alarms more often than configured, beyond noise, fails).
    The calibration is conservative here (docs/monitoring.md states the measured rates: 0 of 200).
    The batches are drawn from one 120-text pool, so they share texts and the interval, which assumes
    independent batches, is if anything too narrow: it can only fail more often."""
    from scipy.stats import binomtest

    flagged: dict[str, int] = {}
    for seed in range(FPR_BATCHES):
        for result in fitted.predict(_batch(drift_vectors["same"], drift_config.batch_size, seed=100 + seed)):
            flagged[result.detector] = flagged.get(result.detector, 0) + int(result.is_drift)
    intervals = {
        name: binomtest(count, FPR_BATCHES).proportion_ci(confidence_level=0.95, method="exact")
        for name, count in flagged.items()
    }
    report = {
        name: f"{flagged[name] / FPR_BATCHES:.3f} [{ci.low:.3f}, {ci.high:.3f}]"
        for name, ci in intervals.items()
    }
    print(f"false positive rate at p_val={drift_config.p_val} over {FPR_BATCHES} batches: {report}")
    assert set(flagged) == {f"evidently-{m}" for m in drift_config.evidently_methods}
    assert all(ci.low <= drift_config.p_val for ci in intervals.values()), report


def test_wrong_dimension_is_refused_with_the_reference_dimension(fitted):
    with pytest.raises(ConfigError, match=r"dimension 128 .*\(384\)"):
        fitted.predict(np.zeros((16, 128), dtype=np.float32))


def test_reducer_and_calibration_round_trip(tmp_path, fitted, drift_vectors, drift_config):
    fitted.reference.save(tmp_path / "queries")
    save_calibration(tmp_path / "queries", drift_config.batch_size, fitted.detectors)
    again = SpaceReference.load(tmp_path / "queries", "queries")
    detectors = load_calibration(tmp_path / "queries", again, drift_config.batch_size, drift_config)
    assert detectors is not None
    assert load_calibration(tmp_path / "queries", again, drift_config.batch_size + 1, drift_config) is None
    batch = _batch(drift_vectors["topic"], drift_config.batch_size, seed=3)
    before = [r.model_dump() for r in fitted.predict(batch)]
    after = [r.model_dump() for r in SpaceDetectors(again, list(detectors)).predict(batch)]
    assert before == after


def test_pca_reducer_keeps_at_most_the_rows_it_was_fitted_on():
    reducer = Reducer.fit(np.random.default_rng(0).normal(size=(6, 32)), 16, "pca")
    assert reducer.output_dimension == 5
    assert reducer.transform(np.zeros((2, 32))).shape == (2, 5)
