"""mvlpt.core.stats: paired differences and the percentile bootstrap, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvlpt.core.stats import ABOVE, BELOW, bootstrap_ci, paired_differences, paired_summary, verdict


def _rows(method, values, shots=1):
    return [{"method": method, "shots": shots, "seed": s, "accuracy": v} for s, v in enumerate(values, 1)]


def test_bootstrap_matches_numpy_resampling_by_hand():
    x = [1.0, 4.0, -2.0, 3.5, 0.5]
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(x), size=(2000, len(x)))
    means = np.asarray(x)[idx].mean(axis=1)
    ref = (float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95)))
    assert bootstrap_ci(x, n_boot=2000, level=0.90, seed=7) == pytest.approx(ref, abs=1e-12)


def test_bootstrap_is_deterministic_and_depends_on_the_seed():
    x = [0.3, -1.2, 2.5, 0.9, 1.1, -0.4]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_constant_difference_gives_a_zero_width_interval_at_that_value():
    assert bootstrap_ci([0.1, 0.1, 0.1]) == (0.1, 0.1)
    assert bootstrap_ci([2.5]) == (2.5, 2.5)


def test_interval_contains_the_mean_and_narrows_with_lower_level():
    x = list(np.random.default_rng(0).normal(1.0, 2.0, size=12))
    lo, hi = bootstrap_ci(x)
    assert lo <= float(np.mean(x)) <= hi and lo < hi
    lo80, hi80 = bootstrap_ci(x, level=0.8)
    assert lo <= lo80 and hi80 <= hi


def test_bootstrap_edge_cases():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], n_boot=0)


def test_paired_differences_pair_on_the_key_and_count_unpaired_rows():
    rows = (_rows("M", [60.0, 62.0, 58.0]) + _rows("S", [55.0, 63.0])  # seed 3 of M has no partner
            + [{"method": "S", "shots": 4, "seed": 1, "accuracy": 70.0}]  # nor this baseline row
            + [{"method": "Other", "shots": 1, "seed": 1, "accuracy": 0.0}]  # neither method: ignored
            + [{"method": "M", "shots": 2, "seed": 1, "accuracy": float("nan")},
               {"method": "S", "shots": 2, "seed": 1, "accuracy": 50.0}])  # a NaN metric: both unpaired
    p = paired_differences(rows, "M", "S", "accuracy")
    assert p.keys == [(1, 1), (1, 2)] and p.diffs == [5.0, -1.0] and len(p) == 2
    assert p.by_key() == {(1, 1): 5.0, (1, 2): -1.0}
    assert (p.unpaired_treatment, p.unpaired_baseline, p.unpaired) == (2, 2, 4)


def test_paired_differences_other_keys_and_errors():
    rows = [{"method": "A", "seed": s, "score": 1.0 + s} for s in (1, 2)] + [{"method": "B", "seed": 1, "score": 1.0}]
    p = paired_differences(rows, "A", "B", "score", key=("seed",))
    assert p.diffs == [1.0] and p.unpaired_treatment == 1
    with pytest.raises(ValueError, match="cannot pair"):
        paired_differences(rows + [{"method": "B", "seed": 1, "score": 3.0}], "A", "B", "score", key=("seed",))
    with pytest.raises(ValueError, match="same method"):
        paired_differences(rows, "A", "A", "score")
    assert paired_differences([{"method": "A", "score": 1.0}], "A", "B", "score").unpaired_treatment == 1  # no key


def test_summary_numbers_and_verdicts():
    rows = _rows("M", [60.0, 62.0, 58.0, 61.0, 59.0]) + _rows("S", [55.0, 60.0, 57.0, 56.0, 57.0])
    s = paired_summary(rows, "M", "S", "accuracy", n_boot=5000, seed=1)
    d = [5.0, 2.0, 1.0, 5.0, 2.0]
    assert s["n"] == 5 and s["diff"] == pytest.approx(np.mean(d))
    assert s["mean_treatment"] == pytest.approx(60.0) and s["mean_baseline"] == pytest.approx(57.0)
    assert (s["ci_low"], s["ci_high"]) == bootstrap_ci(d, 5000, 0.95, 1)
    assert s["wins"] == 5 and s["losses"] == 0 and s["ties"] == 0 and s["unpaired"] == 0
    assert s["verdict"] == ABOVE and s["ci_low"] > 0
    flipped = paired_summary(rows, "S", "M", "accuracy")
    assert flipped["verdict"] == BELOW and flipped["wins"] == 0 and flipped["diff"] == pytest.approx(-3.0)
    mixed = paired_summary(_rows("M", [60.0, 50.0, 61.0]) + _rows("S", [55.0, 55.0, 55.0]), "M", "S", "accuracy")
    assert mixed["verdict"] == "" and mixed["wins"] == 2 and mixed["losses"] == 1
    empty = paired_summary(_rows("M", [1.0]), "M", "S", "accuracy")
    assert empty["n"] == 0 and math.isnan(empty["diff"]) and empty["verdict"] == "" and empty["unpaired"] == 1
    assert verdict(0.0, 1.0) == "" and verdict(float("nan"), 1.0) == ""
    one = paired_summary(_rows("M", [60.0]) + _rows("S", [50.0]), "M", "S", "accuracy")
    assert one["n"] == 1 and (one["ci_low"], one["ci_high"]) == (10.0, 10.0) and one["verdict"] == ""  # one pair: no mark
