"""A command that trains from one YAML config: ``--config PATH [key=value ...]`` plus export flags.

Shared by the heads' ``pretrain`` commands (the core knows nothing of what they train).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from .cli_common import run_guarded
from .config import load_config

C = TypeVar("C")


def train_and_export_main(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    config_cls: type[C],
    run: Callable[..., dict[str, Any]],
    export_from_run: Callable[[C], Path | str],
    example_config: str,
) -> int:
    """Parse ``--config``/overrides/``--export-only``/``--no-export``; then export the run's latest
    checkpoint (``--export-only``) or ``run(cfg, export=...)`` and print its result as JSON. Errors are
    one line and an exit code (:func:`~.cli_common.run_guarded`), also under ``python -m``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help=f"YAML recipe, e.g. {example_config}")
    p.add_argument("--export-only", action="store_true", help="export the run's latest checkpoint, no training")
    p.add_argument("--no-export", action="store_true", help="train only")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=10")
    args = p.parse_args(argv)

    def go() -> int:
        cfg = load_config(config_cls, args.config, args.overrides)
        if args.export_only:
            print(f"exported to {export_from_run(cfg)}")
            return 0
        result = run(cfg, export=not args.no_export)
        print(json.dumps({k: v for k, v in result.items() if k != "best"}, indent=2, default=str))
        return 0

    return run_guarded(prog, go)
