"""``text-mpt``: MPT on a frozen T5 from the command line.

One dialect with ``mvlpt``: ``<command> --config X.yaml [key=value ...]``::

    text-mpt teachers --config configs/text/teachers.yaml [key=value ...]
    text-mpt source   --config configs/text/source.yaml   [key=value ...]
    text-mpt adapt    --config configs/text/adapt.yaml    [key=value ...]
    text-mpt eval     --config configs/text/adapt.yaml    [checkpoint=RUN_DIR] [selection.eval_part=test|val|dev] [key=value ...]
    text-mpt pretrain --config configs/pretrain/tiny_t5.yaml [key=value ...]

The config may also be given first without ``--config`` (``text-mpt teachers configs/text/teachers.yaml
[key=value ...]``, the original form, kept as an alias). ``run_dir`` is the run's directory (``output_dir``
is its old name on the text head); ``data.root`` is accepted for ``data_root`` (see
:class:`text_mpt.config.TextRunConfig`).

Training stages pick the best checkpoint on a ``val`` part and report it on a disjoint ``test`` part
(``selection``, see :class:`text_mpt.config.SelectionConfig`); ``eval`` scores the same seeded
``test`` part by default.
    text-mpt predict  [--run] RUN_DIR --input rows.jsonl [--output preds.jsonl] [--mode rank|generate]
    text-mpt export-peft RUN_DIR ADAPTER_DIR
    text-mpt import-peft ADAPTER_DIR OUT_DIR [--config CONFIG.yaml [key=value ...]]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from mvlpt.core.cli_common import EXIT_BAD_INPUT, package_version, run_guarded, unknown_command
from mvlpt.core.errors import ConfigError

STAGES = {"teachers": "teachers", "source": "source", "adapt": "target"}
COMMANDS = ("teachers", "source", "adapt", "eval", "predict", "export-peft", "import-peft", "pretrain")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="text-mpt", description="Multitask prompt tuning (MPT) of a frozen T5.")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [("teachers", "train one vanilla prompt per source task"),
                        ("source", "train decomposed prompts on all source tasks with distillation"),
                        ("adapt", "adapt the source prompt to target task(s) (low-rank factors)"),
                        ("eval", "evaluate a trained run (checkpoint=RUN, default run_dir) on the config's tasks: "
                                 "by default on the reported test part of the same seeded val/test split "
                                 "(selection.eval_part=test|val|dev)")]:
        s = sub.add_parser(name, help=help_, usage=f"text-mpt {name} --config CONFIG.yaml [key=value ...] [options]\n"
                                                   f"       text-mpt {name} CONFIG.yaml [key=value ...] [options]  (alias)")
        s.add_argument("--config", "-c", help="YAML config (configs/text/...); may also be given as the first argument")
        s.add_argument("overrides", nargs="*", metavar="key=value",
                       help="key=value overrides, e.g. train.max_steps=100 run_dir=runs/x (after the config file when "
                            "it is given without --config)")
        s.add_argument("--strict", action="store_true",
                       help="fail (instead of warning) when a prompt fails a health check (= train.health.strict=true)")
        if name in STAGES:
            s.add_argument("--fresh", action="store_true",
                           help="discard the run directory's previous contents instead of resuming (= fresh=true)")
    s = sub.add_parser("predict", help="answer rows of any task of a trained run")
    s.add_argument("run", nargs="?", help="run directory, checkpoint directory or prompts file (or --run)")
    s.add_argument("--run", dest="run_option", metavar="RUN", help="the same as the positional RUN (as in mvlpt predict)")
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


def _row(text: str, where: str) -> dict:
    """One JSON object row; anything else is a :class:`ConfigError` naming ``where`` and the row."""
    short = text if len(text) <= 80 else text[:77] + "..."
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg} at column {e.colno}): {short!r}; a row looks like "
                          '\'{"task": "sst2", "sentence": "a gorgeous film"}\'') from None
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: a row must be a JSON object with 'task' and the task's fields, found "
                          f"{type(row).__name__}: {short!r}")
    return row


def _predict_run(args) -> str:
    """The run of ``predict``: positional or ``--run`` (once)."""
    if args.run and args.run_option and args.run != args.run_option:
        raise ConfigError(f"predict: two runs given ({args.run} and --run {args.run_option}); give one")
    run = args.run or args.run_option
    if not run:
        raise ConfigError("predict: give the run directory: text-mpt predict --run RUN_DIR --row '{...}'")
    return run


def _rows(args) -> list[dict]:
    rows = []
    if args.input:
        with open(args.input) as f:
            rows += [_row(line, f"{args.input}:{i}") for i, line in enumerate(f, 1) if line.strip()]
    rows += [_row(r, f"--row {i}" if len(args.row) > 1 else "--row") for i, r in enumerate(args.row, 1)]
    if not rows:
        raise ConfigError("predict: give rows with --input FILE.jsonl or --row '{\"task\": ..., ...}'")
    return rows


_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def config_and_overrides(args: argparse.Namespace) -> tuple[str, list[str]]:
    """``(config file, overrides)`` of a stage / ``eval`` command: ``--config X.yaml key=value ...``, or the
    alias ``X.yaml key=value ...`` (the first argument that is no ``key=value`` is the config)."""
    items = list(args.overrides)
    if args.config is not None:
        bad = [i for i in items if not _OVERRIDE.match(i)]
        if bad:
            raise ConfigError(f"{bad[0]!r}: the config is already given with --config {args.config}; the other "
                              "arguments are key=value overrides (e.g. train.max_steps=100)")
        return args.config, items
    if items and not _OVERRIDE.match(items[0]):
        return items[0], items[1:]
    raise ConfigError(f"give a config: text-mpt {args.command} --config CONFIG.yaml [key=value ...] "
                      f"(e.g. configs/text/tiny/{'adapt' if args.command == 'eval' else args.command}.yaml)")


def command_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides of a training command: its own plus those its flags stand for."""
    return (config_and_overrides(args)[1] + (["train.health.strict=true"] if args.strict else [])
            + (["fresh=true"] if getattr(args, "fresh", False) else []))


def peft_base_hint(adapter_dir: str | Path) -> str | None:
    """How to load the base model and call the adapter, when ``adapter_config.json`` names no base model
    PEFT can load (``null`` for the random ``tiny`` T5; the shipped ``tiny-t5`` is no hub name either)."""
    adapter_dir = Path(adapter_dir)
    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if base not in (None, "tiny", "tiny-t5"):
        return None
    run = adapter_dir / "mvlpt_run.json"
    return (f"note: base_model_name_or_path is {json.dumps(base)}: PEFT cannot load this run's backbone by name. "
            f"Build it from the run config, then load the adapter:\n"
            f"    t5, tok = text_mpt.backbone.load_backbone(mvlpt.core.config.from_dict(\n"
            f"        text_mpt.config.BackboneConfig, json.load(open('{run}'))['backbone']))\n"
            f"    model = peft.PeftModel.from_pretrained(t5, '{adapter_dir}')\n"
            f"    model(input_ids=..., attention_mask=..., labels=answer_ids, task_ids=task_ids)\n"
            f"  pass labels=, not decoder_input_ids=: PEFT's MPT forward builds the decoder input from labels")


def run(argv: Sequence[str] | None = None) -> int:
    """Run a command (raises library errors)."""
    args = _parser().parse_args(argv)
    from .config import load_run_config

    if args.command in STAGES:
        cfg = load_run_config(config_and_overrides(args)[0], command_overrides(args))  # errors before the heavy imports
        from .pipeline import train_stage

        out = train_stage(cfg, expected_stage=STAGES[args.command])
        print(Path(out["results"][0]).read_text())
        print(f"run directory: {out['run_dir']}")
    elif args.command == "eval":
        cfg = load_run_config(*config_and_overrides(args))
        from .pipeline import evaluate_run

        out = evaluate_run(cfg)
        print(Path(out["results"][0]).read_text())
        print(f"evaluated on the {out['split']} part (selection.eval_part; default test, the reported part)")
    elif args.command == "predict":
        run_path = _predict_run(args)
        rows = _rows(args)  # bad rows are reported before the model is loaded
        from .inference import Predictor

        preds = Predictor.from_run(run_path, device=args.device).predict(rows, args.batch_size, args.mode)
        text = "".join(json.dumps(p) + "\n" for p in preds)
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
    elif args.command == "export-peft":
        from .peft_io import export_peft

        out = export_peft(args.run, args.out)
        print(f"PEFT adapter written to {out}")
        hint = peft_base_hint(out)
        if hint:
            print(hint)
    elif args.command == "import-peft":
        cfg = load_run_config(args.config, args.overrides) if args.config else None
        from .peft_io import import_peft

        print(f"checkpoint written to {import_peft(args.adapter, args.out, cfg)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: library errors are printed as one line ``text-mpt: error: ...`` (exit code 2; a
    failed ``--strict`` health check: 1); Ctrl-C exits with 130 after training saved a checkpoint."""
    if argv is None:  # the console command: health warnings as plain WARNING lines
        from mvlpt.core.health import readable_warnings

        readable_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    bad = unknown_command(argv, COMMANDS)
    if bad:
        print(f"text-mpt: error: {bad}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if argv[:1] == ["pretrain"]:  # span-corruption pretraining of the tiny T5 (its own parser)
        from .pretrain import main as pretrain_main

        return run_guarded("text-mpt", lambda: pretrain_main(argv[1:]))
    return run_guarded("text-mpt", lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
