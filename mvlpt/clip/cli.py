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
from typing import TYPE_CHECKING, Sequence

from mvlpt.core.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, package_version, run_guarded, unknown_command
from mvlpt.core.errors import ConfigError

if TYPE_CHECKING:
    from .pipeline.run_config import CLIPRunConfig

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "clip"
QUICKSTART = REPO_CONFIGS / "quickstart.yaml"
COMMANDS = ("teachers", "source", "adapt", "zeroshot", "fewshot", "experiment", "quickstart", "predict", "pretrain")
#: the commands that train (``--fresh``)
TRAINING_COMMANDS = ("teachers", "source", "adapt", "fewshot", "experiment", "quickstart")

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
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "teachers": "train vanilla teacher prompts, one per source task",
        "source": "train decomposed prompts on all source tasks, distilled from the teachers",
        "adapt": "adapt to the target task (from the source run; --scratch for a single-task baseline); with "
                 "target.shots=K it trains with train.seed = target.seed, as the fewshot cell k<K>_s<seed> does",
        "zeroshot": "evaluate zero-shot CLIP with hand templates on the target",
        "fewshot": "run the few-shot sweep (methods x shots x seeds) on the target",
        "experiment": "teachers -> source -> fewshot in one command",
        "quickstart": "the offline experiment of configs/clip/quickstart.yaml",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        _add_config(p, required=name != "quickstart")
        if name in TRAINING_COMMANDS:
            p.add_argument("--fresh", action="store_true",
                           help="discard the run directory's previous contents instead of resuming (= fresh=true)")
        if name == "adapt":
            p.add_argument("--scratch", action="store_true",
                           help="single-task prompt from random init (CoOp/VPT/UPT baseline) instead of the source")
        if name == "zeroshot":
            p.add_argument("--ensemble", action="store_true", help="use each task's template ensemble")
    p = sub.add_parser("predict", help="classify images (or answer questions) with a trained run",
                       description="Classify images / answer questions with a trained run. One model serves every "
                                   "task of the run; --task may be given once or once per image.")
    p.add_argument("--run", required=True, help="run directory (holds config.json and checkpoints/)")
    p.add_argument("--task", action="append", default=None,
                   help="task name or id; once for all images or once per image (not needed for a one-task run)")
    p.add_argument("--topk", type=int, default=1, help="print the N most probable classes / answers per image")
    p.add_argument("--question", action="append", default=None, help="question (VQA tasks); once or once per image")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("images", nargs="+", help="image files (unreadable ones are skipped with a message; exit code 1)")
    sub.add_parser("pretrain", help="pretrain the tiny CLIP (see mvlpt.clip.pretrain)", add_help=False)
    return parser


def _per_image(values: list[str] | None, n: int, what: str) -> list[str | None] | None:
    if values is None:
        return None
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(f"give --{what} once or once per image ({n}), found {len(values)}")
    return values


def _print_result(res) -> None:
    print(f"\n{res.stage} run: {res.run_dir} ({res.steps} steps, {res.time_s:.1f}s)")
    print((res.run_dir / "results.md").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: library errors are one line ``mvlpt <command>: error: ...`` with exit code 2
    (a failed ``--strict`` health check: 1); Ctrl-C exits with 130 after training saved a checkpoint."""
    if argv is None:  # the console command: health warnings as plain WARNING lines
        from mvlpt.core.health import readable_warnings

        readable_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "pretrain":
        from mvlpt.clip import pretrain

        return pretrain.main(argv[1:])  # one-line errors and exit codes: guarded inside (core.commands)
    parser = build_parser()
    bad = unknown_command(argv, COMMANDS)
    if bad:
        print(f"mvlpt: error: {bad}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return run_guarded(f"mvlpt {args.command}", lambda: _dispatch(args))


def command_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides of a command: its own plus those its flags stand for."""
    return (list(args.overrides) + (["train.health.strict=true"] if getattr(args, "strict", False) else [])
            + (["fresh=true"] if getattr(args, "fresh", False) else []))


def stage_config(cfg: "CLIPRunConfig", command: str, scratch: bool = False,
                 ensemble: bool = False) -> "CLIPRunConfig":
    """The stage config of a one-stage command (``teachers | source | adapt | zeroshot``).

    ``adapt`` with ``target.shots=K`` trains with ``train.seed = target.seed``, as the few-shot sweep's
    cell ``k<K>_s<seed>`` does, so the run named ``..._k<K>_s<seed>`` is that cell's run (a command-line
    ``train.seed=...`` still wins, in both)."""
    from .pipeline.run_config import config_for_stage

    stage = {"teachers": "teachers", "source": "source", "zeroshot": "zeroshot",
             "adapt": "single" if scratch else "target"}[command]
    extra: dict = {"zeroshot_ensemble": True} if ensemble else {}
    out = config_for_stage(cfg, stage, extra or None)
    if command == "adapt" and out.target is not None and out.target.shots and out.target.seed:
        out = config_for_stage(cfg, stage, {**extra, "train": {"seed": out.target.seed}})
    return out


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "predict":
        return _predict(args)
    from .pipeline.run_config import load_run_config

    cfg = load_run_config(args.config, command_overrides(args))
    if args.command in ("experiment", "quickstart"):
        from .pipeline.experiment import ensure_backbone, run_experiment

        cfg = ensure_backbone(cfg, print)
        out = run_experiment(cfg)
        print(f"\n{out['table']}\nplot: {out['paths']['plot']}\nall runs: {out['paths']['runs_csv']}"
              f"\n({out['time_s']:.0f}s)")
        return 0
    if args.command == "fewshot":
        from .pipeline.sweep import run_fewshot

        out = run_fewshot(cfg)
        print(f"\n{out['table']}\nplot: {out['paths']['plot']}\nall runs: {out['paths']['runs_csv']}")
        return 0
    from .pipeline.stages import run_stage

    stage_cfg = stage_config(cfg, args.command, getattr(args, "scratch", False), getattr(args, "ensemble", False))
    _print_result(run_stage(stage_cfg))
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Print one line per image (``image  task  prediction  probability``; ``--topk``: the N best); an
    unreadable image is reported as ``skipped <path>: <reason>`` and the others are still predicted."""
    if args.topk < 1:
        raise ConfigError(f"--topk must be >= 1, found {args.topk}")
    n = len(args.images)
    per_task = _per_image(args.task, n, "task")
    tasks = None if per_task is None else [int(t) if t.isdigit() else t for t in per_task]  # type: ignore[union-attr]
    questions = _per_image(args.question, n, "question")
    from .pipeline.predict import Predictor

    predictor = Predictor.from_run(args.run, device=args.device)
    rows = predictor.predict(args.images, tasks, questions, topk=args.topk, skip_unreadable=True)
    skipped = 0
    for img, row in zip(args.images, rows):
        if "error" in row:
            skipped += 1
            print(f"skipped {img}: {row['error']}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": img, **row}))
        elif args.json:
            print(json.dumps({"image": img, **row}))
        elif args.topk > 1:
            best = ", ".join(f"{t['prediction']} {t['prob']:.3f}" for t in row["top"])
            print(f"{img}\t{row['task']}\t{row['prediction']}\t{row['prob']:.3f}\t{best}")
        else:
            print(f"{img}\t{row['task']}\t{row['prediction']}\t{row['prob']:.3f}")
    if skipped:
        print(f"mvlpt predict: {skipped} of {n} image(s) skipped", file=sys.stderr)
    return EXIT_FAILED if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
