"""Does a tiny-t5 export fit its supervised tasks? Rank accuracy on held-out vs training rows.

The rows are split as ``text_mpt.pretrain.prepare`` splits them (the recipe's seed and eval fraction,
from the export's ``metadata.json``), so "held-out" is what pretraining never trained on and "train"
is the first ``--train-rows`` rows it did. Train ≈ held-out ≈ majority: the task was not fit at all;
train ≫ held-out: memorised, not learned.

    MVLPT_DATA=../shared/data python benchmarks/tiny_t5_fit.py [export_dir ...] [--train-rows 400]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("exports", nargs="*", help="tiny-t5 export directories (default: the shipped weights)")
    p.add_argument("--train-rows", type=int, default=400, help="training rows scored per task")
    p.add_argument("--threads", type=int, default=2)
    return p


def majority(pairs: Sequence[tuple[str, str]]) -> float:
    targets = [t for _, t in pairs]
    return max(targets.count(t) for t in set(targets)) / len(targets)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from text_mpt import pretrain
    from text_mpt.pretrain.data import default_data_root, read_supervised, target_strings

    torch.set_num_threads(args.threads)
    root = default_data_root()
    targets = target_strings(root)
    print("| export | task | held-out (majority, n) | train (majority, n) |\n|---|---|---|---|")
    for w in [Path(e) for e in args.exports] or [pretrain.PACKAGE_DIR]:
        model = T5ForConditionalGeneration.from_pretrained(str(w))
        tok = AutoTokenizer.from_pretrained(str(w))
        meta = json.loads((w / "metadata.json").read_text())
        d, seed = meta["config"]["data"], meta["config"]["train"]["seed"]
        wrapper = pretrain.T5PretrainModel(model)
        wrapper.eval()
        per_task = read_supervised(root, d["supervised"], targets)
        for task, (held, train) in pretrain.held_out_split(per_task, d["eval_fraction"], seed).items():
            cells = []
            for part in (held, train[: args.train_rows]):
                acc = wrapper.rank_accuracy(tok, part, d["max_input_length"], d["max_target_length"])
                cells.append(f"{100 * acc:.1f} % ({100 * majority(part):.1f} %, {len(part)})")
            print(f"| {w} | {task} | {cells[0]} | {cells[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
