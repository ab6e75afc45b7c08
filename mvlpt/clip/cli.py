"""``mvlpt``: multitask vision-language prompt tuning of CLIP from the command line.

Every command reads one experiment config (``--config``, YAML under ``configs/clip/``) plus
``key=value`` overrides (e.g. ``train.max_steps=200 prompt.method=vpt``), which win over the
config's per-stage sections.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "clip"
QUICKSTART = REPO_CONFIGS / "quickstart.yaml"

DESCRIPTION = """\
Multitask prompt tuning of a frozen CLIP (MPT / MVLPT).

The stages of a transfer experiment, each on the config's tasks:
  teachers   vanilla prompts per source task (sources)
  source     decomposed prompts on all sources jointly, distilled from the teachers
             (source_mode=mvlpt: MVLPT's one shared prompt over the union of the source classes,
             no teachers; the target then fine-tunes a vanilla prompt from it)
  adapt      few-shot adaptation of the target from the source (or --scratch: single-task baseline)
  zeroshot   zero-shot CLIP with hand templates on the target (--ensemble: template ensemble)
  fewshot    methods x shots x seeds on the target -> CSV, markdown table, PNG plot
  experiment teachers -> source -> fewshot, all in one (sweep lines with source_mode: mvlpt
             get their own source run, without teachers)
  quickstart the experiment on configs/clip/quickstart.yaml (offline, CPU, minutes)
  predict    classify images / answer questions with a trained run
  pretrain   pretrain the shipped tiny CLIP

Examples:
  mvlpt quickstart
  mvlpt experiment --config configs/clip/mvlpt_coop.yaml
  mvlpt fewshot --config configs/clip/mini_shared.yaml sweep.seeds=[1] prompt.method=vpt
  mvlpt predict --run runs/quickstart/source_coop --task easy_vqa_shape img.png
"""


def _add_config(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", "-c", required=required, default=None if required else str(QUICKSTART),
                   help="experiment config (YAML)" + ("" if required else f" (default: {QUICKSTART})"))
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.max_steps=100 prompt.method=vpt output_dir=runs/x")
    p.add_argument("--strict", action="store_true",
                   help="fail (instead of warning) when a prompt fails a health check: a task at chance, collapsed "
                        "class texts, an oversized prompt (= train.health.strict=true)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvlpt", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "teachers": "train vanilla teacher prompts, one per source task",
        "source": "train decomposed prompts on all source tasks, distilled from the teachers",
        "adapt": "adapt to the target task (from the source run; --scratch for a single-task baseline)",
        "zeroshot": "evaluate zero-shot CLIP with hand templates on the target",
        "fewshot": "run the few-shot sweep (methods x shots x seeds) on the target",
        "experiment": "teachers -> source -> fewshot in one command",
        "quickstart": "the offline experiment of configs/clip/quickstart.yaml",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        _add_config(p, required=name != "quickstart")
        if name == "adapt":
            p.add_argument("--scratch", action="store_true",
                           help="single-task prompt from random init (CoOp/VPT/UPT baseline) instead of the source")
        if name == "zeroshot":
            p.add_argument("--ensemble", action="store_true", help="use each task's template ensemble")
    p = sub.add_parser("predict", help="classify images (or answer questions) with a trained run",
                       description="Classify images / answer questions with a trained run. One model serves every "
                                   "task of the run; --task may be given once or once per image.")
    p.add_argument("--run", required=True, help="run directory (holds config.json and checkpoints/)")
    p.add_argument("--task", action="append", required=True,
                   help="task name or id; once for all images or once per image")
    p.add_argument("--question", action="append", default=None, help="question (VQA tasks); once or once per image")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("images", nargs="+", help="image files")
    sub.add_parser("pretrain", help="pretrain the tiny CLIP (see mvlpt.clip.pretrain)", add_help=False)
    return parser


def _per_image(values: list[str] | None, n: int, what: str) -> list[str | None] | None:
    if values is None:
        return None
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise SystemExit(f"mvlpt predict: give --{what} once or once per image ({n}), found {len(values)}")
    return values


def _print_result(res) -> None:
    print(f"\n{res.stage} run: {res.run_dir} ({res.steps} steps, {res.time_s:.1f}s)")
    print((res.run_dir / "results.md").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the console command: health warnings as plain WARNING lines
        from mvlpt.core.health import readable_warnings

        readable_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "pretrain":
        from mvlpt.clip import pretrain

        return int(pretrain.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from mvlpt.core.errors import MVLPTError

    try:
        return _dispatch(args)
    except (MVLPTError, FileNotFoundError) as e:
        print(f"mvlpt {args.command}: error: {e}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from .pipeline import (config_for_stage, load_run_config, run_experiment, run_fewshot, run_stage)

    if args.command == "predict":
        return _predict(args)
    overrides = list(args.overrides) + (["train.health.strict=true"] if getattr(args, "strict", False) else [])
    cfg = load_run_config(args.config, overrides)
    if args.command in ("experiment", "quickstart"):
        from .pipeline.experiment import ensure_backbone

        cfg = ensure_backbone(cfg, print)
        out = run_experiment(cfg)
        print(f"\n{out['table']}\nplot: {out['paths']['plot']}\nall runs: {out['paths']['runs_csv']}"
              f"\n({out['time_s']:.0f}s)")
        return 0
    if args.command == "fewshot":
        out = run_fewshot(cfg)
        print(f"\n{out['table']}\nplot: {out['paths']['plot']}\nall runs: {out['paths']['runs_csv']}")
        return 0
    stage = {"teachers": "teachers", "source": "source", "zeroshot": "zeroshot",
             "adapt": "single" if getattr(args, "scratch", False) else "target"}[args.command]
    extra = {"zeroshot_ensemble": True} if getattr(args, "ensemble", False) else None
    _print_result(run_stage(config_for_stage(cfg, stage, extra)))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .pipeline.predict import Predictor

    n = len(args.images)
    tasks = [int(t) if t.isdigit() else t for t in _per_image(args.task, n, "task")]  # type: ignore[union-attr]
    predictor = Predictor.from_run(args.run, device=args.device)
    rows = predictor.predict(args.images, tasks, _per_image(args.question, n, "question"))
    for img, row in zip(args.images, rows):
        if args.json:
            print(json.dumps({"image": img, **row}))
        else:
            print(f"{img}\t{row['task']}\t{row['prediction']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
