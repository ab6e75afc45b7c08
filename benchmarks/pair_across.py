"""Paired differences between methods of two miniature result files (same K, same seed).

The miniature pairs each multitask line with the single-task line of *its own* run. This pairs a
method of one ``results/miniature_<tag>.csv`` with a method of another, e.g. MCoOp (MVLPT) from a
random context (``--coop-init random``) against CoOp from "a photo of a" (the default grid): does the
multitask source give more than a hand-written template does? A pair's two runs must have trained on
the same few-shot images; where both run directories still exist, their ``splits/*.json`` files are
compared and the table says how many pairs were checked (a mismatch is an error).

    python benchmarks/pair_across.py \\
        benchmarks/results/miniature_cpu_flowers5_coop_random_init_10seeds.csv "MCoOp (MVLPT)" "random context" \\
        benchmarks/results/miniature_cpu_flowers5_coop_template_init_10seeds.csv CoOp "'a photo of a'" \\
        --out benchmarks/results/miniature_cpu_flowers5_across_inits.md

The table is :func:`mvlpt.clip.pipeline.report.paired_markdown` (the miniature's own), the CI its
percentile bootstrap over seeds (:mod:`mvlpt.core.stats`).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def read_rows(path: str | Path, method: str, label: str) -> list[dict[str, Any]]:
    """The rows of ``method`` in a miniature CSV, relabelled ``"<method>, <label>"``; one target only."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == method]
    if not rows:
        raise SystemExit(f"{path}: no rows of method {method!r}")
    targets = sorted({r["target"] for r in rows})
    if len(targets) != 1:
        raise SystemExit(f"{path}: method {method!r} has rows of several targets {targets}; give one target's file")
    return [{**r, "method": f"{method}, {label}", "shots": int(r["shots"]), "seed": int(r["seed"]),
             "accuracy": float(r["accuracy"])} for r in rows]


def check_same_images(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """``(checked, pairs)``: pairs whose two run directories both hold the few-shot split files, and
    all pairs. Raises ``SystemExit`` when a checked pair's splits differ."""
    by_key = {(r["shots"], r["seed"]): r for r in b}
    checked = pairs = 0
    for r in a:
        other = by_key.get((r["shots"], r["seed"]))
        if other is None:
            continue
        pairs += 1
        da, db = Path(r.get("run_dir") or "") / "splits", Path(other.get("run_dir") or "") / "splits"
        fa, fb = sorted(da.glob("*.json")), sorted(db.glob("*.json"))
        if not fa or not fb:
            continue
        if [p.name for p in fa] != [p.name for p in fb] or any(x.read_bytes() != y.read_bytes() for x, y in zip(fa, fb)):
            raise SystemExit(f"K={r['shots']} seed={r['seed']}: {da} and {db} hold different few-shot splits")
        checked += 1
    return checked, pairs


def images_checked_line(checked: int, pairs: int) -> str:
    """Say how many of the pairs were checked to hold the same few-shot images."""
    if checked == 0:
        return f"not checked for any of the {pairs} pairs (run directories absent)"
    rest = "" if checked == pairs else ", the rest not checked (run directories absent)"
    return f"{checked} of {pairs} pairs checked (splits files of both run directories identical){rest}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("treatment", nargs=3, metavar=("CSV", "METHOD", "LABEL"), help="the multitask side")
    p.add_argument("baseline", nargs=3, metavar=("CSV", "METHOD", "LABEL"), help="the baseline side")
    p.add_argument("--out", default=None, help="also write the markdown here")
    given = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(given)

    from mvlpt.clip.pipeline.report import paired_markdown, paired_rows

    t_rows, b_rows = read_rows(*args.treatment), read_rows(*args.baseline)
    t, b = t_rows[0]["method"], b_rows[0]["method"]
    if t_rows[0]["target"] != b_rows[0]["target"]:
        raise SystemExit(f"the two sides are different targets: {t_rows[0]['target']} vs {b_rows[0]['target']}")
    checked, n_pairs = check_same_images(t_rows, b_rows)
    shots = sorted({r["shots"] for r in t_rows} & {r["shots"] for r in b_rows})
    paired = paired_rows(t_rows + b_rows, [(t, b)], shots)
    head = (f"# {t} − {b} → {t_rows[0]['target']}\n\n"
            f"- multitask side: `{args.treatment[0]}`, method {args.treatment[1]!r}\n"
            f"- baseline side: `{args.baseline[0]}`, method {args.baseline[1]!r}\n"
            f"- same few-shot images: {images_checked_line(checked, n_pairs)}\n"
            f"- command: `python benchmarks/pair_across.py {shlex.join(given)}`\n\n")
    md = head + paired_markdown(paired, "accuracy", heading="##")
    print(md)
    if args.out:
        Path(args.out).write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
