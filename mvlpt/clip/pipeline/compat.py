"""Checks that a teacher / source run fits the run that loads it, with errors naming what was
expected and what was found (before any tensor is touched)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvlpt.clip.prompts import prompt_shape_keys
from mvlpt.core.checkpoint import CONFIG_FILE, read_json, resolve_prompts_file
from mvlpt.core.config import to_dict
from mvlpt.core.errors import CheckpointError

from .run_config import CLIPRunConfig, config_from_run

#: backbone fields that change the model (cache dirs and precision do not)
BACKBONE_KEYS = ("name", "pretrained", "model_config", "checkpoint")


def _get(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def read_run_config(path: str | Path, what: str) -> tuple[CLIPRunConfig | None, Path]:
    """The CLIP config saved with a run / checkpoint (``None`` for a bare safetensors file)."""
    try:
        prompts = resolve_prompts_file(path)
    except FileNotFoundError as e:
        raise CheckpointError(f"{what} {path} not found: {e}. Run the {what.split()[0]} stage first "
                              f"(e.g. `mvlpt {'teachers' if what.startswith('teacher') else 'source'} --config ...`) "
                              "or point the config at the run directory") from None
    cfg_file = prompts.parent / CONFIG_FILE
    if not cfg_file.is_file():
        cfg_file = Path(path) / CONFIG_FILE
    if not cfg_file.is_file():
        return None, prompts
    return config_from_run(read_json(cfg_file), f"{what} {path}"), prompts


def check_compatible(found: CLIPRunConfig, expected: CLIPRunConfig, what: str, path: str | Path) -> None:
    """Raise :class:`CheckpointError` when ``found`` (a saved run) was trained for another backbone
    or another prompt shape than ``expected`` (the run about to load it)."""
    fb, eb = to_dict(found.backbone), to_dict(expected.backbone)
    diff = [k for k in BACKBONE_KEYS if k in eb and fb.get(k) != eb.get(k)]
    if diff:
        raise CheckpointError(
            f"{what} {path} was trained on another backbone: expected "
            + ", ".join(f"{k}={eb.get(k)!r}" for k in diff) + "; found "
            + ", ".join(f"{k}={fb.get(k)!r}" for k in diff)
            + ". Use the same backbone settings as that run, or train a new one for this backbone.")
    # the prompt fields that change the saved tensors' shapes: ``method`` and each registered method's shape_keys
    fp, ep = to_dict(found.prompt), to_dict(expected.prompt)
    diff = [k for k in prompt_shape_keys() if _get(ep, k) is not None and _get(fp, k) != _get(ep, k)]
    if diff:
        raise CheckpointError(
            f"{what} {path} has another prompt shape: expected "
            + ", ".join(f"prompt.{k}={_get(ep, k)!r}" for k in diff) + "; found "
            + ", ".join(f"prompt.{k}={_get(fp, k)!r}" for k in diff)
            + ". Set these prompt keys to the run's values (or retrain it with yours).")


def check_same_tasks(found: CLIPRunConfig, expected_names: list[str], what: str, path: str | Path) -> None:
    """The teacher run must hold the source tasks, in the same order (task ids are positions)."""
    names = [t["name"] for t in found.resolved_tasks]
    if names and names != expected_names:
        raise CheckpointError(f"{what} {path} was trained on tasks {names}, but this run's source tasks are "
                              f"{expected_names}; train the teachers on the same 'sources' list (same order)")
