"""What a command will run, from its config alone (no data, no model): the sweep's cells and their stage
configs and directories, and the source recipes an experiment trains. The runners (:mod:`.sweep`,
:mod:`.experiment`) and the checks made before them (:mod:`.preflight`) both read it, so it sits below
both of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError
from mvlpt.core.run_dir import fingerprint

from .run_config import CLIPRunConfig, MethodSpec, TaskEntry, config_for_stage, merge, method_epochs_by_shots, slug


@dataclass
class Cell:
    method: MethodSpec
    shots: int
    seed: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.method.name, self.shots, self.seed)


def target_of(cfg: CLIPRunConfig) -> TaskEntry:
    """The sweep's target task (an error naming the key when it is missing)."""
    if not isinstance(cfg.target, TaskEntry):
        raise ConfigError("a few-shot sweep needs 'target' (a dataset name or mapping)")
    return cfg.target


def sweep_dir(cfg: CLIPRunConfig) -> Path:
    """``sweep.out_dir`` or ``<output_dir>/fewshot_<target>``."""
    if cfg.sweep.out_dir:
        return Path(cfg.sweep.out_dir)
    return Path(cfg.output_dir) / f"fewshot_{slug(target_of(cfg).name)}"


def cells(cfg: CLIPRunConfig) -> list[Cell]:
    """The sweep's cells, method-major; a zero-shot method is one cell (K = 0, seed = 0). The seeds
    of K are ``sweep.seeds_at[K]`` when given, else ``sweep.seeds``."""
    out = []
    for m in cfg.sweep.methods:
        if m.stage == "zeroshot":
            out.append(Cell(m, 0, 0))
        else:
            out += [Cell(m, k, s) for k in cfg.sweep.shots for s in cfg.sweep.seeds_for(k)]
    return out


def cell_config(cfg: CLIPRunConfig, cell: Cell, out_dir: Path, classes: str | None = None) -> CLIPRunConfig:
    """The stage config of one cell: the target with K shots / seed, the method's prompt and overrides."""
    target = to_dict(target_of(cfg))
    target.update(shots=cell.shots, seed=cell.seed or target.get("seed", 1))
    if classes is not None:
        target["classes"] = classes
    run = out_dir / slug(cell.method.name) / (f"k{cell.shots}_s{cell.seed}" if cell.shots else "zeroshot")
    if classes == "new":
        run = run.with_name(run.name + "_new")
    extra: dict[str, Any] = {"target": target, "run_dir": str(run), "zeroshot_ensemble": cell.method.ensemble}
    if cell.seed:
        extra["train"] = {"seed": cell.seed}
    epochs = method_epochs_by_shots(cfg, cell.method.method or cfg.method)
    if cell.shots in epochs:
        extra["train_epochs"] = epochs[cell.shots]
    if cell.method.method:
        extra["prompt"] = {"method": cell.method.method}
    if cell.method.source_mode:
        extra["source_mode"] = cell.method.source_mode
    return config_for_stage(cfg, cell.method.stage, merge(extra, cell.method.overrides))


def cell_fingerprint(cfg: CLIPRunConfig, cell: Cell, out_dir: Path) -> str:
    """The fingerprint of a cell's stage config (:mod:`mvlpt.core.run_dir`): ``runs.jsonl`` rows carry it,
    and a finished cell is skipped only when it matches."""
    return fingerprint(to_dict(cell_config(cfg, cell, out_dir, "base" if cfg.sweep.base_to_new else None)))


def source_name(method: str, source_mode: str) -> str:
    """The name of an experiment's source recipe: the prompt method, with ``_<mode>`` for a mode
    other than MPT (``coop``, ``coop_mvlpt``)."""
    return method if source_mode == "mpt" else f"{method}_{source_mode}"


def source_key(cfg: CLIPRunConfig, cell: Cell) -> str | None:
    """Which of the experiment's sources a cell transfers from (a key of :func:`source_methods`'
    recipes: the method, with ``_mvlpt`` for ``source_mode: mvlpt``); None for a cell that needs none."""
    if cell.method.stage != "target":
        return None
    return source_name(cell.method.method or cfg.method, cell.method.source_mode or cfg.source_mode)


def source_methods(cfg: CLIPRunConfig, source_mode: str = "mpt") -> dict[str, dict[str, Any]]:
    """Prompt methods of the sweep's multitask (``target``-stage) lines whose source recipe is
    ``source_mode`` (the line's ``source_mode``, else the config's), in order, with the ``prompt``
    overrides of the first such line (so that the source has the target's prompt shape)."""
    out: dict[str, dict[str, Any]] = {}
    for m in cfg.sweep.methods:
        if m.stage == "target" and (m.source_mode or cfg.source_mode) == source_mode:
            method = m.method or cfg.method
            if method not in out:
                out[method] = merge({"prompt": m.overrides.get("prompt", {})},
                                    {"prompt": {"method": method}, "source_mode": source_mode})
    return out
