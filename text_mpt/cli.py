"""``text-mpt``: MPT on a frozen T5 from the command line.

    text-mpt teachers configs/text/teachers.yaml [key=value ...]
    text-mpt source   configs/text/source.yaml   [key=value ...]
    text-mpt adapt    configs/text/adapt_rte.yaml [key=value ...]
    text-mpt eval     configs/text/adapt_rte.yaml [checkpoint=RUN_DIR] [selection.eval_part=test|val|dev] [key=value ...]

Training stages pick the best checkpoint on a ``val`` part and report it on a disjoint ``test`` part
(``selection``, see :class:`text_mpt.config.SelectionConfig`); ``eval`` scores the same seeded
``test`` part by default.
    text-mpt predict  RUN_DIR --input rows.jsonl [--output preds.jsonl] [--mode rank|generate]
    text-mpt export-peft RUN_DIR ADAPTER_DIR
    text-mpt import-peft ADAPTER_DIR OUT_DIR [--config CONFIG.yaml [key=value ...]]
    text-mpt pretrain --config configs/pretrain/tiny_t5.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from mvlpt.core.errors import MVLPTError

STAGES = {"teachers": "teachers", "source": "source", "adapt": "target"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="text-mpt", description="Multitask prompt tuning (MPT) of a frozen T5.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [("teachers", "train one vanilla prompt per source task"),
                        ("source", "train decomposed prompts on all source tasks with distillation"),
                        ("adapt", "adapt the source prompt to target task(s) (low-rank factors)"),
                        ("eval", "evaluate a trained run (checkpoint=RUN, default output_dir) on the config's tasks: "
                                 "by default on the reported test part of the same seeded val/test split "
                                 "(selection.eval_part=test|val|dev)")]:
        s = sub.add_parser(name, help=help_)
        s.add_argument("config", help="YAML config (configs/text/...)")
        s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
        s.add_argument("--strict", action="store_true",
                       help="fail (instead of warning) when a prompt fails a health check (= train.health.strict=true)")
    s = sub.add_parser("predict", help="answer rows of any task of a trained run")
    s.add_argument("run", help="run directory, checkpoint directory or prompts file")
    s.add_argument("--input", help="JSON Lines; each row has 'task' and the task's fields")
    s.add_argument("--row", action="append", default=[], help="one JSON row (repeatable)")
    s.add_argument("--output", help="write predictions as JSON Lines here (default: stdout)")
    s.add_argument("--mode", choices=["rank", "generate", "both"], default="rank")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--device", default="auto")
    s = sub.add_parser("export-peft", help="write a PEFT MPT adapter directory of a source/target run")
    s.add_argument("run")
    s.add_argument("out")
    s = sub.add_parser("import-peft", help="turn a PEFT MPT adapter into a text-mpt checkpoint directory")
    s.add_argument("adapter")
    s.add_argument("out")
    s.add_argument("--config", help="run config giving the adapter's tasks and backbone (for adapters made elsewhere)")
    s.add_argument("overrides", nargs="*")
    return p


def _rows(args) -> list[dict]:
    rows = []
    if args.input:
        with open(args.input) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    rows += [json.loads(r) for r in args.row]
    if not rows:
        raise SystemExit("predict: give rows with --input FILE.jsonl or --row '{\"task\": ..., ...}'")
    return rows


def run(argv: Sequence[str] | None = None) -> int:
    """Run a command (raises library errors)."""
    args = _parser().parse_args(argv)
    from .config import load_run_config

    if args.command in STAGES:
        from .pipeline import train_stage

        cfg = load_run_config(args.config, list(args.overrides) + (["train.health.strict=true"] if args.strict else []))
        out = train_stage(cfg, expected_stage=STAGES[args.command])
        print(Path(out["results"][0]).read_text())
        print(f"run directory: {out['run_dir']}")
    elif args.command == "eval":
        from .pipeline import evaluate_run

        out = evaluate_run(load_run_config(args.config, args.overrides))
        print(Path(out["results"][0]).read_text())
        print(f"evaluated on the {out['split']} part (selection.eval_part; default test, the reported part)")
    elif args.command == "predict":
        from .inference import Predictor

        preds = Predictor.from_run(args.run, device=args.device).predict(_rows(args), args.batch_size, args.mode)
        text = "".join(json.dumps(p) + "\n" for p in preds)
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
    elif args.command == "export-peft":
        from .peft_io import export_peft

        print(f"PEFT adapter written to {export_peft(args.run, args.out)}")
    elif args.command == "import-peft":
        from .peft_io import import_peft

        cfg = load_run_config(args.config, args.overrides) if args.config else None
        print(f"checkpoint written to {import_peft(args.adapter, args.out, cfg)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: library errors are printed as one line (exit code 2)."""
    if argv is None:  # the console command: health warnings as plain WARNING lines
        from mvlpt.core.health import readable_warnings

        readable_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["pretrain"]:  # span-corruption pretraining of the tiny T5 (its own parser)
            from .pretrain import main as pretrain_main

            return pretrain_main(argv[1:])
        return run(argv)
    except (MVLPTError, FileNotFoundError) as e:
        print(f"text-mpt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
