"""Per-task metrics from prediction records: accuracy, F1, Matthews correlation, Pearson/Spearman.

An unparsable generation is never dropped: for classification it counts as a wrong
class (``(gold + 1) mod C``), for regression as the end of the label range farthest
from the gold value. A correlation that is undefined (constant predictions) is 0.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from .tasks import TaskSpec


def _wrong_for_unparsable(golds: Sequence[int], preds: Sequence[int], num_classes: int) -> list[int]:
    return [p if p >= 0 else (g + 1) % max(2, num_classes) for g, p in zip(golds, preds)]


def _corr(kind: str, a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = stats.pearsonr(a, b)[0] if kind == "pearson" else stats.spearmanr(a, b)[0]
    return 0.0 if math.isnan(r) else float(r)


def classification_metrics(golds: Sequence[int], preds: Sequence[int], num_classes: int,
                           names: Sequence[str]) -> dict[str, float]:
    """``names`` ⊂ {accuracy, f1 (binary, positive class 1), macro_f1, mcc}; ``preds`` may hold -1 (unparsable)."""
    from sklearn.metrics import f1_score, matthews_corrcoef

    y = np.asarray(golds)
    p = np.asarray(_wrong_for_unparsable(golds, preds, num_classes))
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in names:
            if m == "accuracy":
                out[m] = float((y == p).mean()) if len(y) else math.nan
            elif m == "f1":
                out[m] = float(f1_score(y, p, pos_label=1, average="binary", labels=[0, 1], zero_division=0))
            elif m == "macro_f1":
                out[m] = float(f1_score(y, p, average="macro", labels=list(range(num_classes)), zero_division=0))
            elif m == "mcc":
                out[m] = float(matthews_corrcoef(y, p)) if len(y) else math.nan
            else:
                raise ValueError(f"metric {m!r} does not apply to a classification task")
    return out


def regression_metrics(golds: Sequence[float], preds: Sequence[float], low: float, high: float,
                       names: Sequence[str]) -> dict[str, float]:
    """Pearson/Spearman; NaN predictions (unparsable) become the range end farthest from the gold value."""
    y = np.asarray(golds, dtype=float)
    p = np.asarray(preds, dtype=float)
    mid = (low + high) / 2
    p = np.where(np.isnan(p), np.where(y < mid, high, low), p)
    out = {}
    for m in names:
        if m not in ("pearson", "spearman"):
            raise ValueError(f"metric {m!r} does not apply to a regression task")
        out[m] = _corr(m, y, p)
    return out


def task_metrics(spec: TaskSpec, records: Sequence[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    """Metrics of one task's records (keys from ``prefix`` + ``pred``/``pred_value``)."""
    if spec.regression is not None:
        lo, hi, _ = spec.regression
        m = regression_metrics([r["value"] for r in records],
                               [math.nan if r[prefix + "pred_value"] is None else r[prefix + "pred_value"] for r in records],
                               lo, hi, spec.metrics)
    else:
        m = classification_metrics([r["label"] for r in records], [r[prefix + "pred"] for r in records],
                                   spec.num_classes, spec.metrics)
    m["score"] = float(np.mean([m[k] for k in spec.metrics]))
    return m


def compute_metrics(specs: Sequence[TaskSpec], records: Sequence[dict[str, Any]], mode: str = "rank") -> dict[str, float]:
    """``"<task>/<metric>"``, ``"<task>/score"``, ``"<task>/loss"`` (mean gold-answer loss), ``"<task>/n"``
    and the overall ``"score"`` (mean of task scores).

    ``mode``: ``rank`` or ``generate`` picks the predictions behind the main metrics; ``both`` uses rank
    classification for them and adds ``"<task>/gen_<metric>"``. Unlabelled records are ignored.
    """
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("label") is not None:
            by_task[int(r["task_id"])].append(r)
    out: dict[str, float] = {}
    scores = []
    for tid in sorted(by_task):
        spec, recs = specs[tid], by_task[tid]
        main = task_metrics(spec, recs, "gen_" if mode == "generate" else "")
        out.update({f"{spec.name}/{k}": v for k, v in main.items()})
        if mode == "both":
            gen = task_metrics(spec, recs, "gen_")
            out.update({f"{spec.name}/gen_{k}": v for k, v in gen.items()})
        losses = [r["loss"] for r in recs if r.get("loss") is not None]
        if losses:
            out[f"{spec.name}/loss"] = float(np.mean(losses))
        out[f"{spec.name}/n"] = float(len(recs))
        if spec.regression is None and "accuracy" in spec.metrics:  # what always predicting one label scores
            golds = [r["label"] for r in recs]
            out[f"{spec.name}/majority"] = float(max(golds.count(g) for g in set(golds)) / len(golds))
        scores.append(main["score"])
    if scores:
        out["score"] = float(np.mean(scores))
    return out
