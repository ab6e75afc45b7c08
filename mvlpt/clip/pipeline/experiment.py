"""A complete multitask transfer experiment: teachers → source (per prompt method that a
multitask sweep line needs; only the source, without teachers, for lines with
``source_mode: mvlpt``) → few-shot sweep on the target. ``mvlpt quickstart`` is this
function on ``configs/clip/quickstart.yaml``; it composes the same stage runners as the
individual commands."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from mvlpt.clip.backbone import TINY_CLIP, tiny_clip_config
from .backbones import BackbonePool
from .plan import source_methods
from .preflight import preflight
from .run_config import CLIPRunConfig, config_for_stage
from .stages import StageResult, run_stage
from .sweep import run_fewshot


def ensure_backbone(cfg: CLIPRunConfig, log: Any = print) -> CLIPRunConfig:
    """``tiny-clip`` without its shipped weights (not exported yet) → a seeded random tiny CLIP,
    with a notice; any other backbone is returned unchanged."""
    from mvlpt.clip.backbone import WEIGHTS_FILE, weights_dir

    bb = cfg.backbone
    if bb.name != TINY_CLIP or bb.model_config or bb.checkpoint or (weights_dir(TINY_CLIP) / WEIGHTS_FILE).is_file():
        return cfg
    path = Path(cfg.output_dir) / "tiny-clip-random.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tiny_clip_config(), indent=1))
    log(f"note: the shipped tiny-clip weights are not in {weights_dir(TINY_CLIP)}; using a random tiny CLIP "
        f"({path}) — accuracies are then near chance")
    return dataclasses.replace(cfg, backbone=dataclasses.replace(bb, name="tiny-clip-random", pretrained=None,
                                                                  model_config=str(path)))


def run_sources(cfg: CLIPRunConfig, pool: BackbonePool, log: Any = print) -> dict[str, list[StageResult]]:
    """Teachers then source, for each prompt method the sweep transfers from with MPT (key: the
    method); the source stage alone (no teachers) for each one with ``source_mode: mvlpt`` (key:
    ``<method>_mvlpt``)."""
    done: dict[str, list[StageResult]] = {}
    for mode, stages in (("mpt", ("teachers", "source")), ("mvlpt", ("source",))):
        for method, extra in source_methods(cfg, mode).items():
            results = []
            tag = method + ("" if mode == "mpt" else f" · {mode}")
            for stage in stages:
                scfg = config_for_stage(cfg, stage, extra)
                log(f"[{stage} · {tag}] {len(scfg.tasks())} source tasks → {scfg.resolved_run_dir()}")
                res = run_stage(scfg, pool.get(scfg.backbone))
                log(f"[{stage} · {tag}] " + ", ".join(f"{k}={v:.3f}" for k, v in res.metrics.items()
                                                     if k.endswith("accuracy")))
                results.append(res)
            done[method if mode == "mpt" else f"{method}_mvlpt"] = results
    return done


def run_experiment(cfg: CLIPRunConfig, log: Any = print, progress: bool = True) -> dict[str, Any]:
    """Sources, then the few-shot sweep; returns the sweep's output plus ``sources`` and ``time_s``.
    Everything the experiment needs is checked first (:func:`~.preflight.preflight`)."""
    t0 = time.perf_counter()
    preflight(cfg, "experiment", log)
    pool = BackbonePool()
    sources = run_sources(cfg, pool, log)
    out = run_fewshot(cfg, pool, progress=progress)
    out.update(sources=sources, time_s=time.perf_counter() - t0)
    return out
