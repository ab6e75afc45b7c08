"""``mvlpt fewshot``: methods × shots × seeds on the target task → CSV, markdown table, plot.

Each cell is one stage run (:func:`~mvlpt.clip.pipeline.stages.run_stage`) in
``<out_dir>/<method>/k<K>_s<seed>``; its result is appended to ``<out_dir>/runs.jsonl`` as soon
as it finishes, so an interrupted sweep resumes by skipping finished cells (and a cell cut
mid-training resumes from its last checkpoint). Each row records the ``config_fingerprint`` of the
cell's stage config (:mod:`mvlpt.core.run_dir`) and the ``git_commit``; a cell is skipped only when
its fingerprint matches, else it runs again: its run directory then refuses the other config
(naming the keys), or retrains it from scratch with ``fresh``. Zero-shot methods do not depend on K or the seed:
they run once. With ``sweep.base_to_new`` the prompts train on the target's base classes and are
evaluated on the base and the new classes; the table reports their harmonic mean.
``sweep.seeds_at`` gives some K more (or other) seeds than ``sweep.seeds``.

``results.md`` holds the mean ± std table (``n`` = runs per cell) and then the paired differences:
each multitask line against its single-task baseline (a method's ``baseline``, else the ``single``
line of the same prompt method) on the same K and seed, with a bootstrap CI over seeds
(:mod:`mvlpt.core.stats`); ``paired.csv`` has those numbers, ``results.png`` a second panel with them.

The table's title says which split its numbers come from (``eval_split``, test by default) and
which checkpoint of the trained methods: the best one on val (runs with evaluation during
training, see :class:`~mvlpt.clip.pipeline.run_config.DataConfig`) or the last step; ``runs.csv``
has ``split``, ``selected_on`` and ``best_step`` per run.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from mvlpt.core.config import to_dict
from mvlpt.core.provenance import git_commit, provenance_line
from mvlpt.core.run_dir import EXCLUDED, fingerprint

from .backbones import BackbonePool
from .jobs import Job, run_jobs
from .plan import Cell, cell_config, cell_fingerprint, cells, source_key, sweep_dir, target_of
from .preflight import preflight
from .report import RUNS_FILE, append_row, harmonic_mean, read_rows, write_sweep_results
from .run_config import CLIPRunConfig
from .stages import evaluate_trained, run_stage


def run_cell(cfg: CLIPRunConfig, cell: Cell, out_dir: Path, pool: BackbonePool) -> dict[str, Any]:
    """Run one cell and return its row (with the cell's ``config_fingerprint`` and the ``git_commit``)."""
    b2n = cfg.sweep.base_to_new
    ccfg = cell_config(cfg, cell, out_dir, "base" if b2n else None)
    res = run_stage(ccfg, pool.get(ccfg.backbone))
    row: dict[str, Any] = {"method": cell.method.name, "stage": ccfg.stage, "prompt": ccfg.method,
                           "shots": cell.shots, "seed": cell.seed, "accuracy": res.accuracy(),
                           "steps": res.steps, "time_s": round(res.time_s, 2), "run_dir": str(res.run_dir),
                           "split": res.split, "config_fingerprint": fingerprint(to_dict(ccfg)),
                           "git_commit": git_commit()}
    sel = res.selection
    if ccfg.stage != "zeroshot":
        row["selected_on"] = "val" if sel else "last step"
        row["best_step"] = res.checkpoint_step
    if b2n:
        ncfg = cell_config(cfg, cell, out_dir, "new")
        if ncfg.stage == "zeroshot":
            new = run_stage(ncfg, pool.get(ncfg.backbone)).accuracy()
        else:
            metrics = evaluate_trained(res.run_dir, ncfg, pool.get(ncfg.backbone))
            new = float(next((v for k, v in metrics.items() if k.endswith("/accuracy")), math.nan))
        base = row["accuracy"]
        row.update(base=base, new=new, hm=harmonic_mean(base, new))
    return row


def split_note(rows: list[dict[str, Any]], default_split: str = "test") -> str:
    """``" — <split> accuracy; trained prompts: best checkpoint on val"`` (or ``last training step``,
    or per method when the methods differ): where the table's numbers come from."""
    splits = sorted({str(r.get("split", default_split)) for r in rows}) or [default_split]
    by_method: dict[str, set[str]] = {}
    for r in rows:
        if "selected_on" in r:
            by_method.setdefault(r["method"], set()).add(str(r["selected_on"]))
    kinds = {k for v in by_method.values() for k in v}
    what = {"val": "best checkpoint on val", "last step": "last training step"}
    if not kinds:
        sel = ""
    elif len(kinds) == 1:
        sel = f"; trained prompts: {what.get(next(iter(kinds)), next(iter(kinds)))}"
    else:
        sel = "; trained prompts: " + ", ".join(f"{m} {'/'.join(what.get(k, k) for k in sorted(v))}"
                                                 for m, v in by_method.items())
    return f" — reported on {'/'.join(splits)}{sel}"


def pending_cells(cfg: CLIPRunConfig, out_dir: Path) -> list[Cell]:
    """The sweep's cells that ``runs.jsonl`` does not hold with this very config (fingerprint)."""
    done = {(r["method"], r["shots"], r["seed"]): r.get("config_fingerprint") for r in read_rows(out_dir / RUNS_FILE)}
    # a finished cell of another config re-runs: its run dir refuses (naming the keys) or, fresh, retrains
    return [c for c in cells(cfg) if not (c.key in done and done[c.key] == cell_fingerprint(cfg, c, out_dir))]


def quiet(cfg: CLIPRunConfig) -> CLIPRunConfig:
    """``cfg`` as its jobs run it: with ``workers`` > 1 without per-run progress bars (runs side by
    side in worker processes would draw over each other); ``train.progress`` is not part of any fingerprint."""
    if cfg.workers <= 1:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False))


def cell_jobs(cfg: CLIPRunConfig, out_dir: Path, sources: Sequence[str] = ()) -> list[Job]:
    """One job per pending cell; a multitask cell ``needs`` its source job when that job is among
    ``sources`` (an experiment trains its sources in the same job list)."""
    jobs, run_cfg = [], quiet(cfg)
    for c in pending_cells(cfg, out_dir):
        src = f"source:{source_key(cfg, c)}"
        jobs.append(Job(f"cell:{c.method.name}:k{c.shots}:s{c.seed}", run_cell, (run_cfg, c, out_dir),
                        needs=(src,) if src in sources else (), label=f"{c.method.name} K={c.shots} seed={c.seed}"))
    return jobs


def run_fewshot(cfg: CLIPRunConfig, pool: BackbonePool | None = None, progress: bool = True,
                before: Sequence[Job] = (), on_done: Callable[[Job, Any], None] | None = None,
                on_start: Callable[[Job], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep; write ``runs.csv``, ``results.md``/``.csv``, ``paired.csv`` and ``results.png``
    (the multitask − baseline pairs: :meth:`~mvlpt.clip.pipeline.run_config.SweepConfig.pairs`).

    Cells run one after another, or ``cfg.workers`` at a time in worker processes
    (:func:`~.jobs.run_jobs`); each finished cell is appended to ``runs.jsonl`` at once. ``before``
    are jobs to run in the same list (an experiment's source stages; ``on_start`` / ``on_done`` are
    called for them, e.g. to log),
    and a multitask cell waits for its source among them.

    Returns ``{"rows": [...], "paths": {...}, "table": markdown, "jobs": {key: result}}``. Called
    without a ``pool`` (a command's entry), it first checks every cell (:func:`~.preflight.preflight`);
    a caller sharing its pool checks itself.
    """
    if pool is None:
        preflight(cfg, "fewshot")
    pool = pool or BackbonePool()
    out_dir = sweep_dir(cfg)
    runs_file = out_dir / RUNS_FILE
    todo = cells(cfg)
    jobs = list(before) + cell_jobs(cfg, out_dir, [j.key for j in before])
    n_cells = len(jobs) - len(before)
    bar = tqdm(total=len(todo) + len(before), initial=len(todo) - n_cells,  # cells already finished with this config
               desc="experiment" if before else "few-shot sweep", disable=not progress, dynamic_ncols=True)

    def started(job: Job) -> None:
        bar.set_postfix_str(job.label)
        if job.fn is not run_cell and on_start is not None:
            with tqdm.external_write_mode():
                on_start(job)

    def finished(job: Job, result: Any) -> None:
        if job.fn is run_cell:
            append_row(runs_file, result)
        elif on_done is not None:
            with tqdm.external_write_mode():
                on_done(job, result)
        bar.update(1)

    results = run_jobs(jobs, cfg.workers, pool, on_done=finished, on_start=started, threads=cfg.threads)
    bar.close()
    wanted = {c.key for c in todo}
    latest: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in read_rows(runs_file):
        key = (r["method"], r["shots"], r["seed"])
        if key in wanted:
            latest[key] = r
    rows = [latest[c.key] for c in todo if c.key in latest]
    metric = "hm" if cfg.sweep.base_to_new else "accuracy"
    target = target_of(cfg).name
    note = split_note(rows, cfg.eval_split)
    title = f"Few-shot transfer to {target}" + (" (base-to-new, harmonic mean)" if cfg.sweep.base_to_new else "")
    # the sweep's own fingerprint: its whole config, the sweep section included (minus where it is written)
    prov = provenance_line(fingerprint(to_dict(cfg), [k for k in EXCLUDED if k not in ("sweep", "stages")] +
                                       ["sweep.out_dir"]))
    paths = write_sweep_results(rows, out_dir, cfg.sweep.shots, metric, title, note=note, pairs=cfg.sweep.pairs(cfg.method),
                                provenance=prov)
    if cfg.sweep.base_to_new:
        for m in ("base", "new"):
            sub = write_sweep_results(rows, out_dir / m, cfg.sweep.shots, m, f"Few-shot transfer to {target}: {m} classes",
                                      note=note, pairs=cfg.sweep.pairs(cfg.method), provenance=prov)
            paths.update({f"{m}_{k}": v for k, v in sub.items()})
    return {"rows": rows, "paths": paths, "table": Path(paths["table_md"]).read_text(), "jobs": results}
