"""Bootstrap intervals and paired differences: what the gate and the reports rely on."""

from __future__ import annotations

import math
import random

from twinops.domain.stats import (
    format_interval,
    hit_and_reciprocal_rank,
    interval,
    paired_difference_interval,
    value,
)


def _draws(count: int, p: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [1.0 if rng.random() < p else 0.0 for _ in range(count)]


def test_interval_holds_the_value_and_narrows_with_more_questions() -> None:
    few, many = _draws(20, 0.6, 1), _draws(400, 0.6, 1)
    for values in (few, many):
        low, high = interval("golden_hit_at_5", values)
        assert low <= value("golden_hit_at_5", values) <= high
    assert (interval("golden_hit_at_5", many)[1] - interval("golden_hit_at_5", many)[0]) < (
        interval("golden_hit_at_5", few)[1] - interval("golden_hit_at_5", few)[0]
    ) / 2
    assert interval("golden_hit_at_5", [1.0] * 30) == (1.0, 1.0)
    assert all(math.isnan(bound) for bound in interval("golden_mrr", []))
    assert interval("golden_mrr", [0.5, 1.0, 0.25]) == interval("golden_mrr", [0.5, 1.0, 0.25])  # seeded


def test_perplexity_is_the_exp_of_mean_log_perplexity() -> None:
    logs = [math.log(10.0), math.log(40.0)]
    assert math.isclose(value("golden_perplexity", logs), 20.0)
    low, high = interval("golden_perplexity", [math.log(v) for v in (8, 10, 12, 30, 9, 11)])
    assert 8 <= low < value("golden_perplexity", [math.log(v) for v in (8, 10, 12, 30, 9, 11)]) < high <= 30


def test_paired_difference_tells_a_consistent_gain_from_noise() -> None:
    reference = _draws(60, 0.5, 2)
    # Better on every question it can be better on: the interval sits above zero.
    improved = [max(r, b) for r, b in zip(reference, _draws(60, 0.5, 3), strict=True)]
    low, high = paired_difference_interval("golden_hit_at_5", reference, improved)
    assert 0 < low <= high
    # The same rate, drawn independently: the interval straddles zero.
    low, high = paired_difference_interval("golden_hit_at_5", reference, _draws(60, 0.5, 4))
    assert low < 0 < high


def test_hit_rank_and_formatting() -> None:
    assert hit_and_reciprocal_rank(["a", "b", "c"], "b", k=1) == (0.0, 0.5)
    assert hit_and_reciprocal_rank(["a", "b", "c"], "b", k=2) == (1.0, 0.5)
    assert hit_and_reciprocal_rank(["a"], "z", k=5) == (0.0, 0.0)
    assert format_interval(0.7333, (0.62, 0.841)) == "0.733 [0.62, 0.841]"
    assert format_interval(math.nan, None) == "-"
