"""Issue 12's quality bar of a tiny-t5 backbone, in one command: does prompt tuning learn on it?

Four prompt-tuning runs on the frozen backbone, each selected on ``val`` and reported on ``test``
(``selection.mode: auto``: the dev split halved), with ``configs/text/tiny/*``'s settings (prompt length
8, AdamW lr 0.3 constant, batch 16, 400 steps, evaluation every 100):

* ``teacher_sst2``, ``teacher_qnli``: a single-task vanilla prompt (a teacher) on 2,000 training rows;
  the bar is test accuracy **at least 10 points above** the test part's majority class;
* ``pt_rte``, ``pt_mrpc``: PT from a random prompt on the task's *full* training data; the bar is test
  accuracy **above** the majority class.

The table (``--out``, default ``benchmarks/results/tiny_t5_bar_<tag>.md``) gives each check's test
accuracy beside its majority and its selection figures; nothing is chosen on ``test``.

    MVLPT_DATA=../shared/data python benchmarks/tiny_t5_bar.py                       # the shipped tiny-t5
    MVLPT_DATA=../shared/data python benchmarks/tiny_t5_bar.py --backbone runs/pretrain/tiny-t5-v26/export --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TEXT_CONFIGS = ROOT / "configs" / "text" / "tiny"


@dataclass(frozen=True)
class Check:
    """One run of the bar: its stage config, task, training rows (0 = all) and how far above the
    majority class its test accuracy must be (``margin`` points; 0: strictly above)."""

    name: str
    config: str
    task: str
    train_rows: int
    margin: float
    what: str

    @property
    def bar(self) -> str:
        return f"≥ majority + {self.margin:g}" if self.margin else "> majority"

    def met(self, accuracy: float, majority: float) -> bool:
        """Whether test ``accuracy`` (%) clears the bar against the test part's ``majority`` (%)."""
        return accuracy >= majority + self.margin if self.margin else accuracy > majority


#: the checks, in the issue's order
CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("teacher_sst2", "teachers.yaml", "sst2", 2000, 10.0, "single-task prompt (teacher)"),
    Check("teacher_qnli", "teachers.yaml", "qnli", 2000, 10.0, "single-task prompt (teacher)"),
    Check("pt_rte", "adapt.yaml", "rte", 0, 0.0, "PT from random"),
    Check("pt_mrpc", "adapt.yaml", "mrpc", 0, 0.0, "PT from random"),
)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default=None,
                   help="a tiny-t5 export directory (config.json + tokenizer); default: the shipped tiny-t5")
    p.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=0, help="steps per run (0: the configs' 400)")
    p.add_argument("--eval-every", type=int, default=0, help="evaluation interval (0: the configs' 100)")
    p.add_argument("--lr", type=float, default=0.0, help="AdamW learning rate (0: the configs' 0.3)")
    p.add_argument("--prompt-length", type=int, default=0, help="prompt tokens (0: the configs' 8)")
    p.add_argument("--train-rows", type=int, default=-1,
                   help="cap every check's training rows (-1: each check's own, 2,000 or all)")
    p.add_argument("--max-eval", type=int, default=0, help="cap val and test (0: the whole halves)")
    p.add_argument("--jobs", type=int, default=1, help="checks run side by side (1 thread each)")
    p.add_argument("--out-dir", default="runs/tiny_t5_bar", help="where the runs go (<out-dir>/<check>)")
    p.add_argument("--tag", default=None, help="names the result file (default: the backbone's name)")
    p.add_argument("--out", default=None, help="result file (default: benchmarks/results/tiny_t5_bar_<tag>.md)")
    return p


def overrides(check: Check, args: argparse.Namespace, data_root: str) -> list[str]:
    """The ``key=value`` overrides of one check's run."""
    from miniature import _flow  # the miniature's YAML flow writer of override values

    rows = check.train_rows if args.train_rows < 0 else args.train_rows
    task: dict[str, Any] = {"name": check.task}
    if rows:
        task["max_train_examples"] = rows
    if args.max_eval:
        task["max_eval_examples"] = args.max_eval
    ov = [f"data_root={data_root}", f"train.device={args.device}", f"output_dir={Path(args.out_dir) / check.name}",
          f"tasks={_flow([task])}"]
    if check.config == "adapt.yaml":  # PT: one vanilla prompt from random on the full training data
        ov += ["prompt.kind=vanilla", "prompt.init=random", "prompt.source_path=null", "few_shot_k=0"]
    if args.backbone:
        ov += [f"backbone.name={Path(args.backbone).resolve()}", "backbone.tokenizer=null"]
    if args.steps:
        ov.append(f"train.max_steps={args.steps}")
    if args.eval_every:
        ov += [f"train.eval_every={args.eval_every}", f"train.save_every={args.eval_every}"]
    if args.lr:
        ov.append(f"train.optim.lr={args.lr:g}")
    if args.prompt_length:
        ov.append(f"prompt.length={args.prompt_length}")
    return ov


def run_check(name: str, ov: Sequence[str]) -> dict[str, Any]:
    """Train one check's run (one thread) and return its reported test and selection figures (%)."""
    import torch

    from text_mpt.config import load_run_config
    from text_mpt.pipeline import train_stage

    torch.set_num_threads(1)
    check = CHECKS[name]
    t0 = time.perf_counter()
    res = train_stage(load_run_config(TEXT_CONFIGS / check.config, list(ov)))
    test, val, t = res["test"], res["val"], check.task
    split = res["selection"]["tasks"][t]  # how the task was split (as in the run's splits.json)
    return {"check": name, "task": t, "accuracy": 100 * test[f"{t}/accuracy"], "majority": 100 * test[f"{t}/majority"],
            "n": int(test[f"{t}/n"]), "f1": 100 * test[f"{t}/f1"] if f"{t}/f1" in test else None,
            "val_accuracy": 100 * val[f"{t}/accuracy"], "val_majority": 100 * val[f"{t}/majority"],
            "step": res["best_step"], "train_rows": split.get("train_examples"),
            "seconds": round(time.perf_counter() - t0, 1), "run_dir": res["run_dir"]}


def rows_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The bar table: one line per check, its test accuracy beside the majority and the verdict."""
    out = ["| check | task | what | train rows | test n | majority (test) | accuracy (test) | val (majority) "
           "| step | bar | met? |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = CHECKS[r["check"]]
        acc = f"{r['accuracy']:.1f} %" + (f" (F1 {r['f1']:.1f})" if r.get("f1") is not None else "")
        met = c.met(r["accuracy"], r["majority"])
        out.append(f"| {r['check']} | {r['task']} | {c.what} | {r['train_rows']:,} | {r['n']} | {r['majority']:.1f} % | "
                   f"{'**' + acc + '**' if met else acc} | {r['val_accuracy']:.1f} % ({r['val_majority']:.1f} %) | "
                   f"{r['step']} | {c.bar} | {'**yes**' if met else 'no'} |")
    return out


def backbone_line(backbone: str | None) -> str:
    """Which backbone: its directory and, from its ``metadata.json``, size, steps and commit."""
    from text_mpt import pretrain

    path = Path(backbone) if backbone else pretrain.PACKAGE_DIR
    meta_file = path / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    bits = [f"{meta['parameters'] / 1e6:.2f} M parameters"] if "parameters" in meta else []
    if "steps" in meta:
        bits.append(f"{meta['steps']} pretraining steps")
    if meta.get("commit"):
        bits.append(f"pretrained at commit `{str(meta['commit'])[:7]}`")
    shown = "the shipped tiny-t5 (`text_mpt/weights/tiny-t5`)" if not backbone else f"`{backbone}`"
    return shown + (f" ({', '.join(bits)})" if bits else "")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.backbone and not (Path(args.backbone) / "config.json").is_file():
        raise SystemExit(f"--backbone {args.backbone}: no config.json there (a T5 export directory?)")
    from mvlpt.core.data_root import shared_data_root

    data_root = str(shared_data_root())
    if not Path(data_root).is_dir():
        raise SystemExit("no data: set MVLPT_DATA to the shared data (GLUE subsets as JSON Lines)")
    import torch

    from bench_common import environment

    tag = args.tag or (Path(args.backbone).resolve().parent.name if args.backbone else "tiny-t5")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"tiny_t5_bar_{tag}.md"
    jobs = [(name, overrides(CHECKS[name], args, data_root)) for name in args.checks]
    env = environment(torch.device(args.device))  # the commit and time the runs start at
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(run_check, *zip(*jobs)))
    else:
        rows = [run_check(name, ov) for name, ov in jobs]
    wall = time.perf_counter() - t0
    cmd = "python benchmarks/tiny_t5_bar.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# tiny-t5 quality bar (issue 12): {tag}", "",
             f"- backbone: {backbone_line(args.backbone)}",
             f"- command: `MVLPT_DATA={data_root} {cmd.strip()}`",
             f"- device: {env['device_name']}, torch {env['torch']}, 1 thread per run, {args.jobs} run(s) side by side",
             f"- git commit: `{env['git_commit']}`, {env['time_utc']}; wall time {wall / 60:.1f} min",
             "- settings: `configs/text/tiny/` (prompt length 8, AdamW lr 0.3 constant, batch 16, 400 steps, val every "
             "100 steps) unless the command overrides them; each run's checkpoint is chosen on `val` (half of the dev "
             "split), its accuracy reported on `test` (the other half): nothing is chosen on test", "",
             *rows_markdown(rows), "",
             "Per-run seconds: " + ", ".join(f"{r['check']} {r['seconds']:.0f} s" for r in rows)
             + f". Runs under `{args.out_dir}`."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
