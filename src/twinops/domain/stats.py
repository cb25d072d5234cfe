"""Confidence intervals: every evaluation and ranking metric is a statistic of per-question values.

A metric's value is ``aggregate(values)``: the mean of per-question scores (hit@k, reciprocal rank,
answer cosine, ...), or, for perplexity, ``exp`` of the mean per-text log-perplexity. Its interval
is the percentile bootstrap of that statistic over questions (``scipy.stats.bootstrap``, fixed
seed, so the same values give the same interval). Two models scored on the same questions are
compared by the paired bootstrap of the difference, which is what tells an improvement from noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0

Aggregate = Callable[..., Any]


def mean_of(values: np.ndarray, axis: int = -1) -> np.ndarray:
    import numpy as np

    return np.mean(values, axis=axis)


def exp_mean_of(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Perplexity from per-text log-perplexities (the geometric mean of per-text perplexities)."""
    import numpy as np

    return np.exp(np.mean(values, axis=axis))


def aggregate_for(metric: str) -> Aggregate:
    """How per-question values of ``metric`` combine into its value."""
    return exp_mean_of if metric.endswith("perplexity") else mean_of


def value(metric: str, values: Sequence[float]) -> float:
    """The metric's value from its per-question values (NaN when there are none)."""
    clean = _finite(values)
    return float(aggregate_for(metric)(clean)) if clean.size else math.nan


def interval(
    metric: str,
    values: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
) -> tuple[float, float]:
    """The percentile-bootstrap interval of ``metric`` over its per-question values."""
    clean = _finite(values)
    if clean.size == 0:
        return math.nan, math.nan
    if clean.size == 1 or bool((clean == clean[0]).all()):
        point = value(metric, clean)
        return point, point
    return _bootstrap((clean,), aggregate_for(metric), confidence, resamples, paired=False)


def paired_difference_interval(
    metric: str,
    reference: Sequence[float],
    challenger: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
) -> tuple[float, float]:
    """Interval of ``metric(challenger) - metric(reference)``, both scored on the same questions."""
    import numpy as np

    left, right = np.asarray(reference, dtype=float), np.asarray(challenger, dtype=float)
    if left.shape != right.shape:
        raise ValueError(f"paired values differ in length: {left.shape} vs {right.shape}")
    keep = np.isfinite(left) & np.isfinite(right)
    left, right = left[keep], right[keep]
    if left.size == 0:
        return math.nan, math.nan
    aggregate = aggregate_for(metric)
    if left.size == 1:
        point = float(aggregate(right) - aggregate(left))
        return point, point

    def difference(first: np.ndarray, second: np.ndarray, axis: int = -1) -> np.ndarray:
        return aggregate(second, axis=axis) - aggregate(first, axis=axis)

    return _bootstrap((left, right), difference, confidence, resamples, paired=True)


def _finite(values: Sequence[float]) -> np.ndarray:
    import numpy as np

    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def _bootstrap(
    samples: tuple[np.ndarray, ...], statistic, confidence: float, resamples: int, *, paired: bool
) -> tuple[float, float]:
    import numpy as np
    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # degenerate resamples warn; the percentile interval stands
        warnings.simplefilter("ignore")
        result = bootstrap(
            samples,
            statistic,
            paired=paired,
            vectorized=True,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(SEED),
        )
    low, high = result.confidence_interval
    return float(low), float(high)


def format_interval(point: float | None, bounds: tuple[float, float] | None) -> str:
    """``0.733 [0.62, 0.84]``: the value and its interval, for tables and terminals."""
    if point is None or (isinstance(point, float) and math.isnan(point)):
        return "-"
    text = f"{point:.3g}"
    if bounds is None or any(math.isnan(bound) for bound in bounds):
        return text
    return f"{text} [{bounds[0]:.3g}, {bounds[1]:.3g}]"


def hit_and_reciprocal_rank(ranked_ids: Sequence[str], relevant: str, k: int) -> tuple[float, float]:
    """(1 if ``relevant`` is in the top ``k`` else 0, 1/rank of ``relevant`` or 0 when it is not listed)."""
    ranked = list(ranked_ids)
    if relevant in ranked:
        rank = ranked.index(relevant) + 1
        return (1.0 if rank <= k else 0.0), 1.0 / rank
    return 0.0, 0.0
