"""Paired comparisons of two methods over the same cells (e.g. the same K and seed), with a
percentile bootstrap confidence interval of the mean difference.

Rows are plain dicts (one per run) holding a method name (``method_key``), the pairing key columns
(``key``, e.g. ``shots`` and ``seed``) and the metric. A treatment row and a baseline row with the
same key values form a pair; rows without a partner (or without a finite metric) are left out and
counted. Knows nothing of CLIP or T5.

With few pairs (3 seeds) the bootstrap distribution has few distinct values and its interval is
narrower than a t interval would be; it tells a consistent difference from one that flips sign,
not more. ``wins`` (pairs where the treatment scores higher) is given beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

#: marks of :func:`verdict`
ABOVE, BELOW = "▲", "▼"


@dataclass
class PairedDifferences:
    """The pairs of one treatment/baseline comparison.

    Attributes:
        keys: the pairing-key values of each pair, in the treatment rows' order.
        treatment / baseline: the metric of each pair's two rows, aligned with ``keys``.
        unpaired_treatment / unpaired_baseline: rows of either method left out (no partner with the
            same key, or a missing / non-finite metric).
    """

    keys: list[tuple[Any, ...]] = field(default_factory=list)
    treatment: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    unpaired_treatment: int = 0
    unpaired_baseline: int = 0

    @property
    def diffs(self) -> list[float]:
        """``treatment − baseline`` per pair."""
        return [t - b for t, b in zip(self.treatment, self.baseline)]

    @property
    def unpaired(self) -> int:
        return self.unpaired_treatment + self.unpaired_baseline

    def by_key(self) -> dict[tuple[Any, ...], float]:
        return dict(zip(self.keys, self.diffs))

    def __len__(self) -> int:
        return len(self.keys)


def _value(row: dict[str, Any], metric: str) -> float | None:
    v = row.get(metric)
    try:
        v = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def paired_differences(rows: Iterable[dict[str, Any]], treatment: str, baseline: str, metric: str,
                       key: Sequence[str] = ("shots", "seed"), method_key: str = "method") -> PairedDifferences:
    """Pair the ``treatment`` and ``baseline`` rows of ``rows`` on ``key``.

    A row whose ``method_key`` is neither method is ignored (not counted). Two rows of one method
    with the same key are an error (the pairing would be ambiguous).
    """
    key = tuple(key)
    if treatment == baseline:
        raise ValueError(f"treatment and baseline are the same method {treatment!r}")
    sides: dict[str, dict[tuple[Any, ...], float]] = {treatment: {}, baseline: {}}
    order: list[tuple[Any, ...]] = []
    no_key = {treatment: 0, baseline: 0}
    for r in rows:
        m = r.get(method_key)
        if m not in sides:
            continue
        try:
            k = tuple(r[c] for c in key)
        except KeyError:
            no_key[m] += 1
            continue
        if k in sides[m]:
            raise ValueError(f"two {m!r} rows with {dict(zip(key, k))}: cannot pair them")
        v = _value(r, metric)
        if v is None:
            sides[m][k] = math.nan  # a placeholder: the key is taken, the row is unpaired
            continue
        sides[m][k] = v
        if m == treatment:
            order.append(k)
    out = PairedDifferences()
    t_side, b_side = sides[treatment], sides[baseline]
    for k in order:
        b = b_side.get(k)
        if b is None or math.isnan(b):
            continue
        out.keys.append(k)
        out.treatment.append(t_side[k])
        out.baseline.append(b)
    paired = set(out.keys)
    out.unpaired_treatment = no_key[treatment] + sum(1 for k in t_side if k not in paired)
    out.unpaired_baseline = no_key[baseline] + sum(1 for k in b_side if k not in paired)
    return out


def bootstrap_ci(values: Sequence[float], n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``: ``n_boot`` resamples with replacement (numpy
    ``default_rng(seed)``, so deterministic), the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of
    the resampled means. ``(nan, nan)`` for no values."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), found {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, found {n_boot}")
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # a constant sample: every resampled mean is that value up to rounding; report it exactly
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    return float(low), float(high)


def verdict(low: float, high: float, above: str = ABOVE, below: str = BELOW) -> str:
    """``▲`` when the interval lies entirely above zero, ``▼`` entirely below, else ``""``."""
    if math.isnan(low) or math.isnan(high):
        return ""
    return above if low > 0 else below if high < 0 else ""


def paired_summary(rows: Iterable[dict[str, Any]], treatment: str, baseline: str, metric: str,
                   key: Sequence[str] = ("shots", "seed"), method_key: str = "method", n_boot: int = 10000,
                   level: float = 0.95, seed: int = 0, min_pairs: int = 2) -> dict[str, Any]:
    """One comparison in numbers: ``treatment``, ``baseline``, ``n`` (pairs), ``mean_treatment``,
    ``mean_baseline`` (over the pairs), ``diff`` (mean paired difference), ``ci_low`` / ``ci_high``
    (:func:`bootstrap_ci`), ``level``, ``wins`` / ``losses`` / ``ties`` (pairs where the treatment
    is higher / lower / equal), ``unpaired`` (rows left out) and ``verdict`` (:func:`verdict`; empty
    with fewer than ``min_pairs`` pairs, whose interval is degenerate)."""
    p = paired_differences(rows, treatment, baseline, metric, key, method_key)
    d = p.diffs
    n = len(d)
    low, high = bootstrap_ci(d, n_boot, level, seed)
    return {"treatment": treatment, "baseline": baseline, "n": n,
            "mean_treatment": float(np.mean(p.treatment)) if n else math.nan,
            "mean_baseline": float(np.mean(p.baseline)) if n else math.nan,
            "diff": float(np.mean(d)) if n else math.nan, "ci_low": low, "ci_high": high, "level": level,
            "wins": sum(1 for v in d if v > 0), "losses": sum(1 for v in d if v < 0),
            "ties": sum(1 for v in d if v == 0), "unpaired": p.unpaired,
            "verdict": verdict(low, high) if n >= min_pairs else ""}
