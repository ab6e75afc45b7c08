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
from .jobs import Job, run_jobs
from .plan import source_methods, source_name
from .preflight import preflight
from .run_config import CLIPRunConfig, config_for_stage
from .stages import StageResult, run_stage
from .sweep import quiet, run_fewshot


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


def run_stage_job(cfg: CLIPRunConfig, pool: BackbonePool) -> StageResult:
    """One stage run as a job (:mod:`.jobs`): ``cfg``'s stage on the pool's backbone."""
    return run_stage(cfg, pool.get(cfg.backbone))


def source_jobs(cfg: CLIPRunConfig) -> list[Job]:
    """The experiment's source chains as jobs: ``teachers:<method>`` → ``source:<method>`` for each
    prompt method the sweep transfers from with MPT, ``source:<method>_mvlpt`` for each one with
    ``source_mode: mvlpt`` (no teachers)."""
    jobs: list[Job] = []
    cfg = quiet(cfg)
    for mode, stages in (("mpt", ("teachers", "source")), ("mvlpt", ("source",))):
        for method, extra in source_methods(cfg, mode).items():
            key = source_name(method, mode)
            tag = method + ("" if mode == "mpt" else f" · {mode}")
            needs: tuple[str, ...] = ()
            for stage in stages:
                jobs.append(Job(f"{stage}:{key}", run_stage_job, (config_for_stage(cfg, stage, extra),), needs,
                                label=f"{stage} · {tag}"))
                needs = (f"{stage}:{key}",)
    return jobs


def _source_log(log: Any) -> tuple[Any, Any]:
    def started(job: Job) -> None:
        scfg = job.args[0]
        log(f"[{job.label}] {len(scfg.tasks())} source tasks → {scfg.resolved_run_dir()}")

    def done(job: Job, res: StageResult) -> None:
        log(f"[{job.label}] " + ", ".join(f"{k}={v:.3f}" for k, v in res.metrics.items() if k.endswith("accuracy")))
    return started, done


def _by_source(jobs: list[Job], results: dict[str, Any]) -> dict[str, list[StageResult]]:
    """``{method (or method_mvlpt): [stage results in order]}`` from the source jobs' results."""
    out: dict[str, list[StageResult]] = {}
    for job in jobs:
        if job.key in results:
            out.setdefault(job.key.split(":", 1)[1], []).append(results[job.key])
    return out


def run_sources(cfg: CLIPRunConfig, pool: BackbonePool, log: Any = print) -> dict[str, list[StageResult]]:
    """Teachers then source, for each prompt method the sweep transfers from with MPT (key: the
    method); the source stage alone (no teachers) for each one with ``source_mode: mvlpt`` (key:
    ``<method>_mvlpt``). Independent chains run side by side with ``cfg.workers`` > 1."""
    jobs = source_jobs(cfg)
    started, done = _source_log(log)
    return _by_source(jobs, run_jobs(jobs, cfg.workers, pool, on_done=done, on_start=started, threads=cfg.threads))


def run_experiment(cfg: CLIPRunConfig, log: Any = print, progress: bool = True) -> dict[str, Any]:
    """Sources, then the few-shot sweep; returns the sweep's output plus ``sources`` and ``time_s``.
    Everything the experiment needs is checked first (:func:`~.preflight.preflight`). With
    ``cfg.workers`` > 1 the sources and the cells share one job list: a cell that needs no source
    (zero-shot, single-task) starts beside the source stages, a multitask cell once its source is done."""
    t0 = time.perf_counter()
    preflight(cfg, "experiment", log)
    pool = BackbonePool()
    jobs = source_jobs(cfg)
    started, done = _source_log(log)
    out = run_fewshot(cfg, pool, progress=progress, before=jobs, on_done=done, on_start=started)
    out.update(sources=_by_source(jobs, out["jobs"]), time_s=time.perf_counter() - t0)
    return out
