"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

Layout of one checkpoint directory (``run_dir/checkpoints/step_<n>/``)::

    prompts.safetensors    trainable tensors (the prompt modules' state)
    config.json            the full resolved run config
    optimizer.safetensors  optimizer tensor state (+ RNG states)
    trainer_state.json     step, scheduler, sampler, optimizer scalars, RNG, best score

Directories are written to ``<name>.tmp`` and renamed into place, and the
``checkpoints/latest`` pointer is replaced atomically, so a crash while writing
leaves the previous checkpoint loadable. Resume takes the newest *complete* checkpoint
(:func:`find_checkpoint`: every file present, JSON parsing, safetensors headers and lengths valid)
and says why it skipped newer ones; :func:`prune_checkpoints` never deletes the one just written,
the only complete one, or a newer one it has not yet replaced.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import CheckpointError, ShapeMismatchError

PROMPTS_FILE = "prompts.safetensors"
CONFIG_FILE = "config.json"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
LATEST = "latest"

_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, zip (torch.save)


def _check_safetensors_file(path: Path) -> None:
    """Refuse anything that is not a complete safetensors file, without unpickling it."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if any(head.startswith(m) for m in _PICKLE_MAGIC):
            raise CheckpointError(
                f"{path} is a pickle/torch.save file, not safetensors; pickled files are never loaded "
                "(they can run code). Convert it with safetensors.torch.save_file in a trusted environment."
            )
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated ({size} bytes): not a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or f.read(1) != b"{":
            raise CheckpointError(f"{path} is not a valid safetensors file (bad header); it may be truncated or of another format")


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """Load a safetensors file with format checks (never unpickles)."""
    path = Path(path)
    _check_safetensors_file(path)
    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{path} could not be read as safetensors ({e}); the file may be truncated") from None


def save_tensors(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in tensors.items():
        t = v.detach().contiguous().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:  # tied weights (e.g. T5's shared embedding): safetensors refuses shared storage
            t = t.clone()
        seen.add((t.untyped_storage().data_ptr(), t.storage_offset()))
        out[k] = t
    save_file(out, str(tmp), metadata=dict(metadata or {}))
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); it may be truncated") from None


def sub_state(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix`` (e.g. ``"text_prompt."``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_module_state(module: nn.Module, state: Mapping[str, Tensor], where: str = "") -> None:
    """``module.load_state_dict`` with errors that name the expected and found shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    label = f"{where}: " if where else ""
    if missing or unexpected:
        raise CheckpointError(f"{label}checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ShapeMismatchError(
                f"{label}{k!r} has shape {tuple(v.shape)} in the checkpoint but the model expects {tuple(own[k].shape)} "
                "(another backbone width, prompt length, rank, layer count or number of tasks?)"
            )
    with torch.no_grad():
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ---------------------------------------------------------------------------------------------
# optimizer and RNG state as tensors + JSON

def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if isinstance(val, Tensor):
                tensors[f"optim.{pid}.{name}"] = val
            else:
                scalars[f"{pid}.{name}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = val
    for key, val in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


# ---------------------------------------------------------------------------------------------
# checkpoint directories

def save_checkpoint_dir(
    directory: str | Path,
    prompts: Mapping[str, Tensor],
    config: Mapping[str, Any],
    extra_tensors: Mapping[str, Tensor] | None = None,
    state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (``<dir>.tmp`` then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_tensors(tmp / PROMPTS_FILE, prompts)
    write_json(tmp / CONFIG_FILE, config)
    if extra_tensors is not None:
        save_tensors(tmp / OPTIM_FILE, extra_tensors)
    if state is not None:
        write_json(tmp / STATE_FILE, state)
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)
    return directory


def set_latest(checkpoints_dir: str | Path, name: str) -> None:
    """Point ``checkpoints/latest`` at ``name`` (atomic replace of a small text file)."""
    p = Path(checkpoints_dir) / LATEST
    tmp = p.with_name(LATEST + ".tmp")
    tmp.write_text(name + "\n")
    os.replace(tmp, p)


#: the files of a step checkpoint; all must be present and readable to resume from it
STEP_FILES = (PROMPTS_FILE, CONFIG_FILE, OPTIM_FILE, STATE_FILE)


def check_safetensors(path: str | Path) -> None:
    """Refuse a safetensors file whose header does not parse or whose data is shorter than the header says."""
    path = Path(path)
    _check_safetensors_file(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path}: the safetensors header is not valid JSON; the file may be truncated") from None
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if max(ends, default=0) > size - 8 - n:
        raise CheckpointError(f"{path} is truncated: {size - 8 - n} data bytes, the header describes {max(ends)}")


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete step checkpoint (a file missing or unreadable), or None."""
    path = Path(path)
    for name in STEP_FILES:
        f = path / name
        if not f.is_file():
            return f"{name} missing"
        try:
            if name.endswith(".json"):
                read_json(f)
            else:
                check_safetensors(f)
        except (CheckpointError, OSError, ValueError) as e:
            return f"{name} unreadable ({str(e).split(';')[0].replace(str(f), name)})"
    return None


def _step(p: Path) -> int | None:
    return int(p.name[5:]) if p.name.startswith("step_") and p.name[5:].isdigit() and p.is_dir() else None


def step_dirs(checkpoints_dir: str | Path) -> list[Path]:
    """``step_<n>`` directories (no ``.tmp`` / ``.old``), by step."""
    d = Path(checkpoints_dir)
    return sorted((p for p in d.glob("step_*") if _step(p) is not None), key=lambda p: _step(p))  # type: ignore[arg-type,return-value]


def find_checkpoint(checkpoints_dir: str | Path) -> tuple[Path | None, list[str]]:
    """The newest complete step checkpoint (the ``latest`` pointer's first, then by step, newest first)
    and why each newer candidate was skipped (``"skipping checkpoints/step_40: trainer_state.json missing"``)."""
    checkpoints_dir = Path(checkpoints_dir)
    cands = step_dirs(checkpoints_dir)[::-1]
    pointer = checkpoints_dir / LATEST
    if pointer.is_file():
        target = checkpoints_dir / pointer.read_text().strip()
        if target in cands:
            cands = [target] + [c for c in cands if c != target]
    skipped = []
    for c in cands:
        problem = checkpoint_problem(c)
        if problem is None:
            return c, skipped
        skipped.append(f"skipping {checkpoints_dir.name}/{c.name}: {problem}")
    return None, skipped


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory, or None (see :func:`find_checkpoint`)."""
    return find_checkpoint(checkpoints_dir)[0]


def prune_checkpoints(checkpoints_dir: str | Path, keep_last: int, current: str | Path) -> list[Path]:
    """Delete step checkpoints older than the ``keep_last`` newest complete ones; returns what was deleted.

    Never deletes ``current`` (just written), a newer step (a later step will replace it) or the only
    complete checkpoint; an incomplete one is deleted only when complete ones newer than it are kept."""
    current = Path(current)
    steps = step_dirs(checkpoints_dir)
    cur = _step(current)
    older = [p for p in steps if p != current and cur is not None and _step(p) < cur]  # type: ignore[operator]
    complete = [p for p in older if checkpoint_problem(p) is None]
    keep = set(complete[max(0, len(complete) - (keep_last - 1)):]) if keep_last > 1 else set()
    if checkpoint_problem(current) is not None and complete:
        keep.add(complete[-1])  # the one just written is not complete: keep the newest that is
    removed = []
    for p in older:
        if p not in keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def resolve_prompts_file(path: str | Path) -> Path:
    """Accept a run dir, a checkpoint dir or a ``.safetensors`` file; return the prompts file."""
    path = Path(path)
    if path.is_file():
        return path
    for cand in (path / PROMPTS_FILE, path / "checkpoints" / "best" / PROMPTS_FILE):
        if cand.is_file():
            return cand
    if (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path / "checkpoints")
        if latest is not None:
            return latest / PROMPTS_FILE
    raise FileNotFoundError(
        f"no prompts found at {path}: expected a {PROMPTS_FILE} file, a checkpoint directory holding one, "
        "or a run directory with checkpoints/best or checkpoints/step_<n>"
    )


def load_run_prompts(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Prompt tensors and the resolved config of a run / checkpoint (config may be empty for a bare file)."""
    f = resolve_prompts_file(path)
    tensors = load_tensors(f)
    cfg_path = f.parent / CONFIG_FILE
    config = read_json(cfg_path) if cfg_path.is_file() else {}
    return tensors, config
