"""Shared machinery of the training-throughput benchmarks.

* :func:`environment` — device, versions and git commit written into every result file;
* :func:`time_interleaved` — baseline and ours timed in the *same* run, alternating, after warm-up,
  with the order rotated every repeat (median of the repeats is the figure);
* :func:`step_memory` — peak GPU memory of one step (``torch.cuda.max_memory_allocated``) and, on every
  device, the bytes of activations autograd saves for the backward pass (the part prompt tuning pays for);
* :func:`step_flops` — FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode``;
* :func:`peak_bf16_flops` — dense bf16 peak of the GPU (for model FLOPs utilisation, MFU);
* :func:`print_table` / :func:`write_json` — the printed table and the JSON result.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]

#: dense (no sparsity) bf16 tensor-core peaks in FLOP/s, matched against the device name (first match wins)
BF16_PEAKS: list[tuple[str, float]] = [
    ("H200", 989.4e12),
    ("GH200", 989.4e12),
    ("H100 NVL", 835.0e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM
    ("H800", 989.4e12),
    ("B200", 2250.0e12),
    ("A100", 312.0e12),
    ("A800", 312.0e12),
    ("L40S", 362.0e12),
    ("L4", 121.0e12),
    ("A10G", 70.0e12),
    ("A10", 125.0e12),
    ("RTX 4090", 165.2e12),
]

Step = Callable[[], None]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def resolve_device(name: str) -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is available")
    return dev


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device, packages: Iterable[str] = ()) -> dict[str, Any]:
    """Device, software versions and the git commit (``-dirty`` when the tree has uncommitted changes)."""
    import importlib.metadata as md

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    env: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": commit + ("-dirty" if dirty and commit else ""),
        "cpu_threads": torch.get_num_threads(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    for p in packages:
        try:
            env[p] = md.version(p)
        except md.PackageNotFoundError:
            env[p] = None
    return env


def peak_bf16_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """Dense bf16 peak (FLOP/s) of ``device``; ``None`` on CPU or for an unknown GPU (pass ``--peak-tflops``)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAKS:
        if key in name:
            return peak
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(rounds: Mapping[str, Step], device: torch.device, warmup: int, repeats: int
                     ) -> dict[str, list[float]]:
    """Seconds per call of every ``rounds[name]()``, measured alternately in one process.

    Each variant first runs ``warmup`` times (allocator, autotuning, caches). Then, ``repeats`` times, every
    variant runs once, in an order rotated by one each repeat, timed with ``time.perf_counter`` between
    device synchronisations. Returns the list of times per variant (use the median).
    """
    names = list(rounds)
    for name in names:
        for _ in range(warmup):
            rounds[name]()
    synchronize(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            synchronize(device)
            t0 = time.perf_counter()
            rounds[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        st = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses without storage
        return None
    return (st.data_ptr(), st.nbytes())


def step_memory(step: Step, device: torch.device, exclude: Iterable[torch.Tensor] = ()) -> dict[str, float | None]:
    """Memory of one training step.

    Returns:
        ``peak_mib``: ``torch.cuda.max_memory_allocated`` during the step (weights included; CUDA only),
        ``step_peak_mib``: the same minus what was allocated before the step (activations, gradients,
        temporaries; CUDA only), ``saved_activations_mib``: distinct storages autograd kept for the backward
        pass, parameters and buffers (``exclude``) left out — measured on every device.
    """
    excluded = {k for k in (_storage_key(t) for t in exclude) if k is not None}
    saved: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key is not None and key not in excluded:
            saved[key] = key[1]
        return t

    out: dict[str, float | None] = {"peak_mib": None, "step_peak_mib": None}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    if device.type == "cuda":
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        out["peak_mib"] = peak / 2**20
        out["step_peak_mib"] = (peak - base) / 2**20
    out["saved_activations_mib"] = sum(saved.values()) / 2**20
    return out


def resident_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of a variant's own parameters, buffers and optimizer state (distinct storages)."""
    seen: dict[int, int] = {}
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v)]
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def step_flops(step: Step) -> int:
    """FLOPs of one call of ``step`` (forward and backward matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def summarize(times: Sequence[float], items_per_round: float, flops_per_round: int | None,
              peak_flops: float | None) -> dict[str, Any]:
    """Median round time → throughput (items/s), achieved TFLOP/s and MFU; also the best round's throughput."""
    med = statistics.median(times)
    out: dict[str, Any] = {
        "round_s_median": med,
        "round_s_all": [round(t, 6) for t in times],
        "throughput": items_per_round / med,
        # the fastest round: the least-disturbed estimate on a shared, noisy machine
        "throughput_best": items_per_round / min(times),
    }
    if flops_per_round is not None:
        out["flops_per_round"] = flops_per_round
        out["achieved_tflops"] = flops_per_round / med / 1e12
        out["mfu"] = flops_per_round / med / peak_flops if peak_flops else None
    return out


def ratio(ours: float | None, base: float | None) -> float | None:
    return ours / base if ours is not None and base else None


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Print (and return) a fixed-width table; ``columns`` is ``[(key, header), ...]``."""
    cells = [[h for _, h in columns]] + [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c[i].rjust(widths[i]) if i else c[i].ljust(widths[i]) for i in range(len(columns)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path}", flush=True)
    return path
