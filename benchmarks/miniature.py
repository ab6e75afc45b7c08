"""The miniature benchmark (issues 6, 12): multitask prompt transfer vs single-task prompts, small,
with a protocol that tells signal from noise (paired differences over seeds with bootstrap CIs).

Two parts, both through the existing pipelines (no training code here):

1. **CLIP** — per target, ``mvlpt experiment --config configs/clip/mini_<target>.yaml`` (that
   target's own sources: teachers → source → few-shot sweep). A target without such a file falls
   back to ``configs/clip/mini_shared.yaml`` (sources cifar10 / mnist / fashion_mnist / easy-vqa):
   ``mvlpt experiment`` for the first such target, ``mvlpt fewshot`` reusing its source runs for
   the others. Methods: zero-shot CLIP, CoOp, VPT (single task, from scratch), MCoOp, MVPT
   (from the MPT-style multitask source) and MCoOp (MVLPT) (from MVLPT's own source recipe, one
   shared prompt; ``source_mode: mvlpt``); ``--upt`` adds UPT / MUPT / MUPT (MVLPT). Shots 1 2 4 8 16, seeds 1 2 3 and
   1..5 at K = 1 (``sweep.seeds_at``); the target is evaluated on its full test split.
2. **Text** — ``text-mpt teachers`` → ``source`` on the tiny configs (``configs/text/tiny``, whatever
   backbone they name), then per target (RTE, MRPC, CB, BoolQ), K and seed: ``text-mpt adapt`` from
   the source (MPT) against the single-task baseline, the same adapt stage with a vanilla prompt
   from random init (``prompt.kind=vanilla prompt.init=random``: PT). The ``selection`` rules of the
   configs decide val / test (small tasks halve their eval split); the test part is not capped by
   default. ``--skip-text`` leaves it out.

Output: ``benchmarks/results/miniature_<tag>.md`` — per target the mean ± std table (with ``n`` =
runs per cell; text: trainable prompt parameters), the paired-difference table (multitask −
baseline on the same K and seed: mean, 95% percentile bootstrap CI, wins/n;
:mod:`mvlpt.core.stats`), the plot, and device, git commit, wall time per part and the exact
command — ``.csv`` (one line per run) and ``_<target>.png`` (accuracy vs K | paired difference vs K).

    MVLPT_DATA=../shared/data python benchmarks/miniature.py --shots 1 4 16 --seeds 1 2 3 --k1-seeds   # CPU, reduced
    MVLPT_DATA=../shared/data python benchmarks/miniature.py --device cuda          # full protocol
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLIP_CONFIGS = ROOT / "configs" / "clip"
CLIP_CONFIG = CLIP_CONFIGS / "mini_shared.yaml"
TEXT_CONFIGS = ROOT / "configs" / "text" / "tiny"
TINY_T5_DIR = ROOT / "text_mpt" / "weights" / "tiny-t5"

CLIP_METHODS = [
    {"name": "ZS-CLIP", "stage": "zeroshot"},
    {"name": "CoOp", "stage": "single", "method": "coop"},
    {"name": "VPT", "stage": "single", "method": "vpt"},
    {"name": "MCoOp", "stage": "target", "method": "coop"},
    {"name": "MVPT", "stage": "target", "method": "vpt"},
    # MVLPT's own source recipe (one shared vanilla prompt over the union of the source classes,
    # no teachers), fine-tuned whole on the target; paired with CoOp like MCoOp
    {"name": "MCoOp (MVLPT)", "stage": "target", "method": "coop", "source_mode": "mvlpt"},
]
#: run directory (under the CLIP output dir) of the source stage trained without distillation
NO_DISTILL_SOURCE = "source_coop_nodistill"
UPT_METHODS = [{"name": "UPT", "stage": "single", "method": "upt"},
               {"name": "MUPT", "stage": "target", "method": "upt"},
               {"name": "MUPT (MVLPT)", "stage": "target", "method": "upt", "source_mode": "mvlpt"}]
#: the text part's single-task baseline (every other text method is paired with it)
TEXT_BASELINE = "PT"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="miniature.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=["flowers5", "sign_digits"],
                   help="CLIP target datasets (configs/clip/mini_<target>.yaml when present)")
    p.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16], help="shots per class (K)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--k1-seeds", nargs="*", type=int, default=[1, 2, 3, 4, 5],
                   help="seeds at K=1 (sweep.seeds_at; the variance is largest there); empty: --seeds")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--workers", type=int, default=1,
                   help="CLIP: stage runs side by side in worker processes (the configs' `workers`; results do not depend on it)")
    p.add_argument("--upt", action="store_true", help="also UPT / MUPT (one more teachers+source pair)")
    p.add_argument("--coop-only", action="store_true",
                   help="CLIP: only the text-prompt lines (ZS-CLIP, CoOp, MCoOp, MCoOp (MVLPT)): no VPT / UPT runs")
    p.add_argument("--coop-init", choices=["config", "random"], default="config",
                   help="CLIP: where the CoOp family's text context starts in the teachers, both source recipes "
                        "and single-task CoOp: the config's prompt.text (mini_shared.yaml: the words 'a photo of a') "
                        "or random (N(0, 0.02²): CoOp's and MVLPT's default, COOP.CTX_INIT ''); target runs "
                        "start from the source either way")
    p.add_argument("--sources", nargs="+", default=None, metavar="DATASET",
                   help="CLIP: train on these sources instead of the target config's (default: all of those): any "
                        "source of a configs/clip/mini_*.yaml, with its settings there; e.g. a group of "
                        "benchmarks/source_groups.py")
    p.add_argument("--lines", nargs="+", default=None, metavar="NAME",
                   help="CLIP: run only these sweep lines, by name (e.g. 'MCoOp (MVLPT)'; default: all of the run's)")
    p.add_argument("--eval-split", choices=["test", "val"], default="test",
                   help="CLIP: the target split the few-shot runs report: test, or val (--val-k training-pool "
                        "images per class not drawn as shots; for choosing sources on validation data, never test)")
    p.add_argument("--val-k", type=int, default=100,
                   help="CLIP, --eval-split val: validation images per class of each few-shot run (data.val_k)")
    p.add_argument("--clip-weights", default=None, metavar="DIR",
                   help="CLIP: the tiny CLIP's weights from this exported folder (a variant pretrained with "
                        "`python -m mvlpt.clip.pretrain ... export_dir=DIR`) instead of the shipped ones")
    p.add_argument("--teacher-steps", type=int, default=None, help="CLIP teachers stage steps (default: the config's)")
    p.add_argument("--source-steps", type=int, default=None, help="CLIP source stage steps (default: the config's)")
    p.add_argument("--fewshot-steps", type=int, default=None,
                   help="fixed steps of each few-shot run (CLIP), replacing the config's sweep.epochs_by_shots "
                        "(default: the config's schedule)")
    p.add_argument("--source-max-eval", type=int, default=500,
                   help="eval examples per CLIP source task (mini_shared.yaml fallback only)")
    p.add_argument("--target-max-eval", type=int, default=0, help="eval examples of the CLIP target (0 = full test split)")
    p.add_argument("--vqa-max-train", type=int, default=4000,
                   help="easy-vqa training questions (source; mini_shared.yaml fallback only)")
    p.add_argument("--distill-ablation", action="store_true",
                   help="also a source stage without distillation (kl_weight = mse_weight = 0) and the target "
                        "methods adapted from it (MCoOp / MPT 'no distill'), beside the distilled ones")
    p.add_argument("--skip-clip", action="store_true")
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--text-backbone", default=None, metavar="DIR",
                   help="a T5 export directory for every text run (default: the configs' backbone, the shipped tiny-t5)")
    p.add_argument("--text-eval-at-start", action="store_true",
                   help="text target runs also evaluate before training, and the start is a selection candidate "
                        "(a run whose training only lowers val reports its start)")
    p.add_argument("--text-targets", nargs="+", default=["rte", "mrpc", "cb", "boolq"])
    p.add_argument("--text-if-too-few", choices=["all", "skip"], default="all",
                   help="a text target's K that some label cannot supply (CB: 3 'maybe'; BoolQ: 14 'no'): that label "
                        "gives all its examples (Dassl's few-shot rule, the default) or the cell is skipped")
    p.add_argument("--text-steps", type=int, default=40, help="steps of each text stage / adapt run")
    p.add_argument("--text-source-train", type=int, default=64, help="training examples per text source task")
    p.add_argument("--text-sources", nargs="+", default=["sst2", "qnli"],
                   help="text source tasks (teachers and the multitask source stage)")
    p.add_argument("--text-source-steps", type=int, default=0,
                   help="steps of the text teachers and source stage (0 = --text-steps)")
    p.add_argument("--text-max-eval", type=int, default=0,
                   help="cap on the val and test parts of each text target (0 = all)")
    p.add_argument("--text-source-max-eval", type=int, default=0,
                   help="cap on the val and test parts of each text source task (0 = all)")
    p.add_argument("--out-dir", default="runs/miniature", help="run directories")
    p.add_argument("--results", default=str(RESULTS), help="where miniature_<tag>.{md,csv,png} go")
    p.add_argument("--tag", default=None, help="file name tag (default: the device type)")
    return p


def _flow(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


def seeds_at(args: argparse.Namespace) -> dict[int, list[int]]:
    """``sweep.seeds_at``: the K=1 seeds when K=1 is swept and they differ from ``--seeds``."""
    k1 = list(getattr(args, "k1_seeds", None) or [])
    return {1: k1} if k1 and 1 in args.shots and k1 != list(args.seeds) else {}


def seeds_for(args: argparse.Namespace, k: int) -> list[int]:
    return seeds_at(args).get(k, list(args.seeds))


# --------------------------------------------------------------------------------------------- CLIP


def clip_config(target: str) -> Path | None:
    """``configs/clip/mini_<target>.yaml`` when it exists (the target's own experiment), else None."""
    p = CLIP_CONFIGS / f"mini_{target}.yaml"
    return p if p.is_file() else None


def clip_output_dir(args: argparse.Namespace, target: str, per_target: bool | None = None) -> Path:
    """``<out>/clip/<target>`` for a per-target experiment (its own sources), ``<out>/clip`` for the
    shared fallback (the sources are reused across targets)."""
    per_target = clip_config(target) is not None if per_target is None else per_target
    return Path(args.out_dir) / "clip" / (target if per_target else "")


def clip_weights_dir(path: str) -> str:
    """``path`` if it holds an exported tiny CLIP (``tiny-clip.json`` and its weights), else a clear error."""
    from mvlpt.clip.backbone import tiny_clip_files

    missing = [f.name for f in tiny_clip_files(Path(path)) if not f.is_file()]
    if missing:
        raise SystemExit(f"--clip-weights {path}: no exported tiny CLIP there (missing {', '.join(missing)}); "
                         "export one with `python -m mvlpt.clip.pretrain --config configs/pretrain/tiny_clip.yaml export_dir=DIR`")
    return str(path)


def clip_overrides(args: argparse.Namespace, device: str, target: str, per_target: bool | None = None) -> list[str]:
    """``mvlpt`` overrides of the miniature: sweep, step counts, evaluation caps, the target; the
    sources only for the ``mini_shared.yaml`` fallback (a per-target config names its own)."""
    per_target = clip_config(target) is not None if per_target is None else per_target
    out = clip_output_dir(args, target, per_target)
    # the few-shot step count goes into each trained method's overrides: a command-line
    # ``train.max_steps`` would be re-applied last and also override the teachers/source stages
    def steps() -> dict[str, Any]:  # a fresh mapping per method (a shared one becomes a YAML anchor)
        return {} if args.fewshot_steps is None else {"train": {"max_steps": args.fewshot_steps}}

    lines = clip_lines(args)
    methods = [dict(m) if m["stage"] == "zeroshot" or args.fewshot_steps is None else {**m, "overrides": steps()}
               for m in lines]
    if getattr(args, "distill_ablation", False):  # the same target stage, adapted from the undistilled source
        methods.append({"name": "MCoOp (no distill)", "stage": "target", "method": "coop", "baseline": "CoOp",
                        "overrides": {**steps(), "source_path": str(out / NO_DISTILL_SOURCE)}})
    ov = [f"output_dir={out}", f"train.device={device}", f"workers={args.workers}"]
    if getattr(args, "clip_weights", None):  # the configs' tiny-clip, its files from this folder
        ov.append(f"backbone.checkpoint={clip_weights_dir(args.clip_weights)}")
    if getattr(args, "coop_init", "config") == "random":  # per stage: a top-level key would also reach the target
        ov += [f"stages.{stage}.prompt.text.init=random" for stage in ("teachers", "source", "single")]
    if getattr(args, "eval_split", "test") == "val":  # the few-shot stages only: sources keep their own splits
        for stage in ("single", "target"):  # no selection on it (val_source auto, eval_every 0): it is reported
            ov += [f"stages.{stage}.eval_split=val", f"stages.{stage}.data.val_source=auto",
                   f"stages.{stage}.data.val_k={args.val_k}"]
    if not per_target or getattr(args, "sources", None):
        ov.append(f"sources={_flow(chosen_sources(args, config_sources(args, target, per_target), source_pool(args, target, per_target)))}")
    # dotted keys, not a whole ``target=`` mapping: overrides are re-applied last to every
    # stage config, and a whole mapping would reset the sweep's per-cell shots / seed
    ov += [f"target.dataset={target}", f"target.max_eval={args.target_max_eval}"]
    used = list(dict.fromkeys(x["method"] for x in methods if "method" in x))
    for stage, n in (("teachers", args.teacher_steps), ("source", args.source_steps)):
        if n is not None:  # the methods' own stage schedules too: they win over the top-level stage keys
            ov.append(f"stages.{stage}.train.max_steps={n}")
            ov += [f"methods.{m}.stages.{stage}.train.max_steps={n}" for m in used]
    if args.fewshot_steps is not None:  # fixed steps instead of the config's epochs per K, its methods' too
        ov.append("sweep.epochs_by_shots={}")
        ov += [f"methods.{m}.sweep.epochs_by_shots={{}}" for m in used]
    ov += [f"sweep.shots={_flow(args.shots)}", f"sweep.seeds={_flow(args.seeds)}",
           f"sweep.seeds_at={_flow(seeds_at(args))}", f"sweep.methods={_flow(methods)}"]
    return ov


def clip_lines(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The CLIP sweep lines of this run: all, the text-prompt ones (``--coop-only``), then those named
    by ``--lines``. Raises ``SystemExit`` (before any training) on an unknown name, and on a zero-shot
    line with ``--eval-split val`` (without shots there is no val split of the target to report)."""
    lines = CLIP_METHODS + (UPT_METHODS if args.upt else [])
    if getattr(args, "coop_only", False):
        lines = [m for m in lines if m["stage"] == "zeroshot" or m.get("method") == "coop"]
    wanted = getattr(args, "lines", None)
    if wanted:
        names = [m["name"] for m in lines]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise SystemExit(f"--lines: {unknown} not among this run's lines {names}")
        lines = [m for m in lines if m["name"] in wanted]
    if getattr(args, "eval_split", "test") == "val" and any(m["stage"] == "zeroshot" for m in lines):
        raise SystemExit("--eval-split val: the zero-shot line has no val split (val is the target's training pool "
                         "beside the K shots); leave it out with --lines")
    return lines


def config_sources(args: argparse.Namespace, target: str, per_target: bool | None = None) -> list[dict[str, Any]]:
    """The source entries of ``target``'s experiment: its ``mini_<target>.yaml`` (``per_target``, by
    default when that file exists), else the shared fallback's (cifar10 / mnist / fashion_mnist /
    easy-vqa with this run's caps)."""
    import yaml

    path = clip_config(target)
    if path is not None and per_target is not False:
        return list(yaml.safe_load(path.read_text()).get("sources") or [])
    return [{"dataset": "cifar10", "shots": 16, "max_eval": args.source_max_eval},
            {"dataset": "mnist", "shots": 16, "max_eval": args.source_max_eval, "hflip": False},
            {"dataset": "fashion_mnist", "shots": 16, "max_eval": args.source_max_eval},
            {"dataset": "easy_vqa", "max_train": args.vqa_max_train, "max_eval": args.source_max_eval}]


def source_name(entry: dict[str, Any]) -> str:
    return str(entry.get("name") or entry["dataset"])


def source_pool(args: argparse.Namespace, target: str, per_target: bool | None = None) -> list[dict[str, Any]]:
    """Every source ``--sources`` may name for ``target``: its own (:func:`config_sources`) first,
    then those of the other ``mini_*.yaml`` experiments, each entry with the settings it has there."""
    import yaml

    pool = {source_name(e): e for e in config_sources(args, target, per_target)}
    for path in sorted(CLIP_CONFIGS.glob("mini_*.yaml")):
        for e in yaml.safe_load(path.read_text()).get("sources") or []:
            pool.setdefault(source_name(e), e)
    return list(pool.values())


def chosen_sources(args: argparse.Namespace, available: Sequence[dict[str, Any]],
                   pool: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The target's sources ``available`` when ``--sources`` is unset; else the entries of ``pool``
    (default: ``available``) it names, in the order given, each with its config's settings (shots,
    caps). Raises ``SystemExit`` on a name the pool lacks."""
    wanted = getattr(args, "sources", None)
    if not wanted:
        return list(available)
    by_name = {source_name(e): e for e in (available if pool is None else pool)}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"--sources: {unknown} not among the miniature's sources {list(by_name)}")
    return [by_name[n] for n in dict.fromkeys(wanted)]


def _clip_steps(cfg) -> str:
    """Each prompt method's schedule: teachers / source steps and the few-shot runs' steps or epochs per K."""
    from mvlpt.clip.pipeline import config_for_stage
    from mvlpt.clip.pipeline.run_config import method_epochs_by_shots

    parts = []
    methods = list(dict.fromkeys(m.method or cfg.method for m in cfg.sweep.methods if m.stage != "zeroshot"))
    for method in methods:
        t, s = (config_for_stage(cfg, st, {"prompt": {"method": method}}) for st in ("teachers", "source"))
        few_cfg = config_for_stage(cfg, "single", {"prompt": {"method": method}})
        eps = {k: v for k, v in method_epochs_by_shots(cfg, method).items() if k in cfg.sweep.shots}
        if eps:
            few = "epochs per K " + ", ".join(f"{k}: {v:g}" for k, v in eps.items())
        elif few_cfg.train_epochs:
            few = f"{few_cfg.train_epochs:g} epochs"
        else:
            few = f"{few_cfg.train.max_steps} steps"
        o = few_cfg.train.optim
        sel = "best on val" if few_cfg.train.eval_every else "last step"
        init = ""
        if method == "coop":
            p = few_cfg.prompt.text
            init = (f"; text context from {p.init_text!r}" if p.init == "text" else f"; text context from {p.init} init")
        parts.append(f"{method}: teachers {t.train.max_steps} / source {s.train.max_steps} steps ({t.train.optim.name} "
                     f"lr {t.train.optim.lr:g}); few-shot {o.name} lr {o.lr:g}, batch {few_cfg.train.batch_size}, {few}, {sel}{init}")
    return "schedules: " + "; ".join(parts)


def run_clip(args: argparse.Namespace, device: str, log: list[str], meta: dict[str, Any]) -> list[dict]:
    """Per target: its own experiment (``mini_<target>.yaml``), or the few-shot sweep on the shared
    fallback's sources (run once, by the first such target). Fills ``meta``: ``plots``, ``pairs``,
    ``times`` and ``settings`` per target."""
    from mvlpt.clip.pipeline import BackbonePool, ensure_backbone, load_run_config, run_fewshot, run_sources

    pool = BackbonePool()
    rows: list[dict] = []
    shared_done = False
    for target in args.targets:
        t0 = time.perf_counter()
        path = clip_config(target)
        per_target = path is not None
        config = path or CLIP_CONFIG
        ov = clip_overrides(args, device, target, per_target)
        first = per_target or not shared_done
        cmd = "experiment" if first else "fewshot"
        log.append(f"MVLPT_DATA={os.environ.get('MVLPT_DATA', '')} mvlpt {cmd} --config "
                   f"{config.relative_to(ROOT)} " + " ".join(shlex.quote(o) for o in ov))
        cfg = ensure_backbone(load_run_config(config, ov), print)
        if first:
            run_sources(cfg, pool, print)  # = the first half of run_experiment, sharing the pool
            shared_done = shared_done or not per_target
            if args.distill_ablation:
                from mvlpt.clip.pipeline import config_for_stage, run_stage

                scfg = config_for_stage(cfg, "source", {
                    "prompt": {"method": "coop"}, "run_dir": str(clip_output_dir(args, target, per_target) / NO_DISTILL_SOURCE),
                    "train": {"distill": {"kl_weight": 0.0, "mse_weight": 0.0}}})
                res = run_stage(scfg, pool.get(scfg.backbone))
                print(f"[source · coop · no distillation] {res.metrics}", flush=True)
                log.append(f"# and, before the sweep, the same source stage without distillation: mvlpt source --config "
                           f"{config.relative_to(ROOT)} <the overrides above> prompt.method=coop "
                           f"run_dir={scfg.run_dir} train.distill.kl_weight=0 train.distill.mse_weight=0")
        out = run_fewshot(cfg, pool, progress=False)
        print(out["table"], flush=True)
        rows += [{"part": "clip", "target": target, **r} for r in out["rows"]]
        meta["plots"][("clip", target)] = Path(out["paths"]["plot"])
        meta["pairs"][("clip", target)] = cfg.sweep.pairs(cfg.method)
        meta["times"][f"CLIP {target}" + (" (with its sources)" if first else "")] = time.perf_counter() - t0
        srcs = ", ".join(t.name for t in cfg.sources)  # type: ignore[union-attr]
        split = ("test split" if args.eval_split == "test"
                 else f"val split ({args.val_k} training-pool images per class not drawn as shots), not test")
        meta["settings"][("clip", target)] = (f"config `{config.relative_to(ROOT)}`; sources {srcs}; target eval "
                                              f"{f'full {split}' if not cfg.target.max_eval else f'{cfg.target.max_eval} examples of the {split}'}; "  # type: ignore[union-attr]
                                              + _clip_steps(cfg))
    return rows


# --------------------------------------------------------------------------------------------- text


def text_backbone_overrides() -> list[str]:
    """The pretrained tiny T5 (``text_mpt/weights/tiny-t5``) when the tiny configs still name the
    seeded random one (``backbone.name: tiny``) and that folder holds a loadable model; none when the
    configs name another backbone themselves (they are then used as they are)."""
    from text_mpt.config import load_run_config

    if load_run_config(TEXT_CONFIGS / "teachers.yaml").backbone.name != "tiny":
        return []
    if not (TINY_T5_DIR / "config.json").is_file():
        return []
    from text_mpt.backbone import load_backbone

    tok = str(TINY_T5_DIR) if any(TINY_T5_DIR.glob("*token*")) or (TINY_T5_DIR / "spiece.model").is_file() else "byt5"
    ov = [f"backbone.name={TINY_T5_DIR}", f"backbone.tokenizer={tok}"]
    try:
        load_backbone(load_run_config(TEXT_CONFIGS / "teachers.yaml", ov).backbone)
    except Exception as e:  # any failure → the configs' random tiny T5, with a notice
        print(f"note: {TINY_T5_DIR} is not loadable ({e}); using the random tiny T5", flush=True)
        return []
    return ov


def text_common_overrides(args: argparse.Namespace, device: str, data_root: str) -> list[str]:
    """Overrides of every text run: data, device, steps and the backbone (``--text-backbone``, checked
    before any training, else :func:`text_backbone_overrides`)."""
    common = [f"data_root={data_root}", f"train.device={device}", f"train.max_steps={args.text_steps}"]
    if getattr(args, "text_backbone", None):
        if not (Path(args.text_backbone) / "config.json").is_file():
            raise SystemExit(f"--text-backbone {args.text_backbone}: no config.json there (a T5 export directory?)")
        return common + [f"backbone.name={Path(args.text_backbone).resolve()}", "backbone.tokenizer=null"]
    return common + text_backbone_overrides()


def _text_stage(config: Path, overrides: list[str], log: list[str] | None) -> dict[str, Any]:
    from text_mpt.config import load_run_config
    from text_mpt.pipeline import train_stage

    cmd = {"teachers.yaml": "teachers", "source.yaml": "source"}.get(config.name, "adapt")
    if log is not None:
        log.append(f"text-mpt {cmd} {config.relative_to(ROOT)} " + " ".join(shlex.quote(o) for o in overrides))
    return train_stage(load_run_config(config, overrides))


def _score(metrics: dict[str, float], task: str) -> float:
    for key in ("score", f"{task}/score", f"{task}/accuracy", "accuracy"):
        if key in metrics:
            return float(metrics[key])
    return float(next(v for k, v in metrics.items() if k.startswith(task)))


def prompt_param_count(run_dir: str | Path) -> int | None:
    """Trainable prompt parameters of a text run, from its saved config (``meta``: the resolved
    prompt, ``d_model``, the tasks): the prompt module rebuilt with the groups that trained (MPT
    target: ``P*`` + the task factors; PT: the vanilla prompt). Falls back to the saved prompt
    tensors' size; None when the run has neither."""
    from mvlpt.core.checkpoint import load_run_prompts
    from mvlpt.core.prompts import build_prompt
    from mvlpt.core.task_model import count_trainable

    try:
        tensors, config = load_run_prompts(run_dir)
    except (FileNotFoundError, OSError):
        return None
    meta = config.get("meta", {})
    rp = meta.get("resolved_prompt")
    try:
        prompt = build_prompt(rp["kind"], len(meta["task_names"]), (int(rp["length"]), int(meta["d_model"])),
                              rank=int(rp.get("rank", 1)))
        prompt.set_trainable(rp["train"])
        return count_trainable(prompt)
    except (KeyError, TypeError, ValueError):
        return int(sum(t.numel() for t in tensors.values()))


def _split_info(run_dir: Path, task: str) -> str:
    """``val <n> / test <n>`` of a text run's task, from its ``splits.json``."""
    try:
        info = json.loads((run_dir / "splits.json").read_text())[task]
        return f"{info.get('rule', '?')} rule: val {len(info.get('val', []))} / test {len(info['test'])} examples"
    except (OSError, KeyError, ValueError):
        return ""


def text_short_labels(task: str, shots: Sequence[int], overrides: Sequence[str]) -> dict[int, dict[str, int]]:
    """``{K: {label: count}}`` for each K the target's training data cannot supply per label (e.g.
    SuperGLUE's 32-shot sets: CB has 3 'maybe' rows, BoolQ 14 'no'), found by the adapt stage's own
    data split (``splits.json``'s ``few_shot_short``) before anything trains."""
    from text_mpt.config import load_run_config
    from text_mpt.pipeline import build_parts

    out: dict[int, dict[str, int]] = {}
    for k in shots:
        cfg = load_run_config(TEXT_CONFIGS / "adapt.yaml", list(overrides) + [
            f"tasks={_flow([{'name': task}])}", f"few_shot_k={k}", "few_shot_if_too_few=all"])
        short = build_parts(cfg, parts=("train",))[0].info.get("few_shot_short")
        if short:
            out[k] = dict(short)
    return out


def short_note(short: dict[int, dict[str, int]], action: str) -> str:
    """The table note for the K some label cannot supply: "K = 4, 8, 16: label 2 ('maybe') has 3 training
    examples, all of them taken (Dassl's few-shot rule)" (``action`` "all") or "... not run" ("skip")."""
    by_labels: dict[tuple, list[int]] = {}
    for k, labels in short.items():
        by_labels.setdefault(tuple(sorted(labels.items())), []).append(k)
    parts = []
    for labels, ks in by_labels.items():
        what = ", ".join(f"label {name} has {n} training example{'s' * (n != 1)}" for name, n in labels)
        parts.append(f"K = {', '.join(map(str, ks))}: {what}, " + (
            "all of them taken (Dassl's few-shot rule; the other labels K each)" if action == "all" else "not run"))
    return "; ".join(parts)


def text_source_stages(args: argparse.Namespace, out: Path, common: list[str]) -> list[tuple[Path, list[str]]]:
    """The text source stages as ``(config, overrides)``: teachers, the distilled source stage and, with
    ``--distill-ablation``, the same source stage without distillation; ``--text-sources`` tasks,
    ``--text-source-steps`` steps (``--text-steps`` when 0)."""
    tasks = [{"name": t, "max_train_examples": args.text_source_train, "max_eval_examples": args.text_source_max_eval}
             for t in args.text_sources]
    if args.text_source_steps:  # replace the target runs' step count (not repeat it), so the logged command reads once
        common = [o for o in common if not o.startswith("train.max_steps=")] + [f"train.max_steps={args.text_source_steps}"]
    src = common + [f"tasks={_flow(tasks)}"]
    stages = [(TEXT_CONFIGS / "teachers.yaml", src + [f"output_dir={out}/teachers"]),
              (TEXT_CONFIGS / "source.yaml", src + [f"output_dir={out}/source", f"teacher_path={out}/teachers"])]
    if args.distill_ablation:
        stages.append((TEXT_CONFIGS / "source.yaml", src + [f"output_dir={out}/source_nodistill",
                                                            "train.distill.kl_weight=0", "train.distill.mse_weight=0"]))
    return stages


def text_target_overrides(args: argparse.Namespace, common: list[str], run: Path, task: str, k: int, seed: int,
                          method: list[str], too_few: bool) -> list[str]:
    """Overrides of one text target run (``adapt.yaml``): task, K, seed, the method's own, and the start as a
    selection candidate with ``--text-eval-at-start``."""
    ov = common + [f"output_dir={run}", f"tasks={_flow([{'name': task, 'max_eval_examples': args.text_max_eval}])}",
                   f"few_shot_k={k}", f"few_shot_seed={seed}", f"train.seed={seed}"] + list(method)
    if getattr(args, "text_eval_at_start", False):
        ov.append("train.eval_at_start=true")
    if too_few:
        ov.append("few_shot_if_too_few=all")
    return ov


def run_text(args: argparse.Namespace, device: str, log: list[str], meta: dict[str, Any]) -> list[dict]:
    """Teachers → source on the tiny configs' sources, then MPT vs PT per target × K × seed."""
    data_root = os.environ.get("MVLPT_DATA") or str(ROOT.parent / "shared" / "data")
    out = Path(args.out_dir) / "text"
    common = text_common_overrides(args, device, data_root)
    # each target's K that some label cannot supply, found before training: the short labels give all
    # their examples (--text-if-too-few all, Dassl's rule) or the cell is skipped; the table says which
    short = {task: text_short_labels(task, args.shots, common) for task in args.text_targets}
    skipped = {task: (set(s) if args.text_if_too_few == "skip" else set()) for task, s in short.items()}
    for task, s in short.items():
        if s:
            print(f"[text] {task}: {short_note(s, args.text_if_too_few)}", flush=True)
    t0 = time.perf_counter()
    for config, overrides in text_source_stages(args, out, common):
        _text_stage(config, overrides, log)
    methods = {"MPT": [f"prompt.source_path={out}/source"],
               TEXT_BASELINE: ["prompt.kind=vanilla", "prompt.init=random", "prompt.source_path=null"]}
    if args.distill_ablation:  # MPT adapted from the source stage without distillation
        methods["MPT (no distill)"] = [f"prompt.source_path={out}/source_nodistill"]
    meta["times"]["text sources (teachers + source)"] = time.perf_counter() - t0
    rows = []
    first = True
    for task in args.text_targets:
        t_task = time.perf_counter()
        for k in [k for k in args.shots if k not in skipped[task]]:
            for seed in seeds_for(args, k):
                for name, extra in methods.items():
                    run = out / f"{task}_{name.lower().replace(' ', '_').replace('(', '').replace(')', '')}_k{k}_s{seed}"
                    ov = text_target_overrides(args, common, run, task, k, seed, extra, k in short[task])
                    t1 = time.perf_counter()
                    res = _text_stage(TEXT_CONFIGS / "adapt.yaml", ov, log if first else None)
                    rows.append({"part": "text", "target": task, "method": name, "stage": "target" if name != TEXT_BASELINE
                                 else "single", "prompt": "decomposed" if name != TEXT_BASELINE else "vanilla",
                                 "shots": k, "seed": seed,
                                 "accuracy": 100.0 * _score(res["metrics"], task),  # fraction → %
                                 "steps": res.get("step"), "params": prompt_param_count(run),
                                 "time_s": round(time.perf_counter() - t1, 2), "run_dir": str(run)})
                    print(f"[text] {task} {name} K={k} seed={seed}: {rows[-1]['accuracy']:.1f}", flush=True)
                first = False
        meta["times"][f"text {task}"] = time.perf_counter() - t_task
        meta["pairs"][("text", task)] = [(m, TEXT_BASELINE) for m in methods if m != TEXT_BASELINE]
        split = _split_info(Path(rows[-1]["run_dir"]), task) if rows else ""
        meta["settings"][("text", task)] = f"steps {args.text_steps} per run; {split or 'see splits.json'}" + (
            f"; {short_note(short[task], args.text_if_too_few)}" if short[task] else "")
    if log and not log[-1].startswith("#"):
        log.append("# (the adapt lines above, MPT then PT, are repeated for every text target, "
                   "K = few_shot_k and seed)")
    return rows


# --------------------------------------------------------------------------------------------- report


def _pairs(part: str, sub: Sequence[dict], given: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The pairs of one table: those given (the sweep's, the text part's), else the CLIP sweep's rule
    (rows' stage / prompt) or, for text, every method against PT."""
    from mvlpt.clip.pipeline.report import default_pairs

    if given is not None:
        return list(given)
    if part == "clip":
        return default_pairs(sub)
    names = list(dict.fromkeys(r["method"] for r in sub))
    return [(m, TEXT_BASELINE) for m in names if m != TEXT_BASELINE] if TEXT_BASELINE in names else []


def _params(sub: Sequence[dict], method: str) -> str:
    counts = sorted({int(r["params"]) for r in sub if r["method"] == method and r.get("params") is not None})
    return "/".join(f"{c:,}" for c in counts) or "—"


def tables(rows: Sequence[dict], shots: Sequence[int], pairs: dict | None = None, settings: dict | None = None,
           plots: dict | None = None) -> str:
    """Markdown per part and target: the mean ± std table over seeds (``n`` = runs per cell; text:
    trainable prompt parameters), the paired-difference table (multitask − baseline, same K and seed,
    bootstrap CI) and the plot."""
    from mvlpt.clip.pipeline.report import paired_markdown, paired_rows, pivot, summarize, with_n

    pairs, settings, plots = pairs or {}, settings or {}, plots or {}
    out = []
    for part, target in dict.fromkeys((r["part"], r["target"]) for r in rows):
        sub = [r for r in rows if r["part"] == part and r["target"] == target]
        summary = summarize(sub, "accuracy")
        piv = with_n(pivot(summary, shots), summary, shots)
        cols = ["method"] + [f"K={k}" for k in shots] + ["n"]
        if part == "text":
            cols.append("trainable params")
            piv = [{**r, "trainable params": _params(sub, r["method"])} for r in piv]
        head = ("CLIP few-shot transfer", "accuracy %") if part == "clip" else (
            "Text: MPT vs single-task PT", "task score %: accuracy; MRPC: mean of accuracy and F1; CB: accuracy and macro F1")
        out.append(f"### {head[0]} → {target} ({head[1]}, mean ± std over seeds)\n")
        if (part, target) in settings:
            out.append(f"{settings[(part, target)]}\n")
        out.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in piv]
        out.append("")
        paired = paired_rows(sub, _pairs(part, sub, pairs.get((part, target))), shots, "accuracy")
        if paired:
            out.append(paired_markdown(paired, "accuracy", heading="####"))
        if (part, target) in plots:
            out.append(f"![{part} {target}]({plots[(part, target)]})\n")
    return "\n".join(out)


def text_plots(rows: Sequence[dict], shots: Sequence[int], stem: str | Path) -> dict[tuple[str, str], str]:
    """``<stem>_text_<task>.png`` per text target: score vs K | paired difference vs K."""
    from mvlpt.clip.pipeline.report import paired_rows, plot_results, summarize

    out = {}
    for task in dict.fromkeys(r["target"] for r in rows if r["part"] == "text"):
        sub = [r for r in rows if r["part"] == "text" and r["target"] == task]
        path = Path(f"{stem}_text_{task}.png")
        plot_results(summarize(sub), path, shots, "score", f"text → {task}",
                     paired=paired_rows(sub, _pairs("text", sub, None), shots))
        out[("text", task)] = path.name
    return out


def write_report(args: argparse.Namespace, argv: Sequence[str], env: dict, rows: list[dict],
                 meta: dict[str, Any], log: list[str], wall_s: float) -> Path:
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    stem = res / f"miniature_{args.tag or env['device']}"
    cols = ["part", "target", "method", "stage", "prompt", "shots", "seed", "accuracy", "params", "steps", "time_s",
            "run_dir"]
    with open(f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    plots: dict[tuple[str, str], str] = {}
    for (part, target), p in meta.get("plots", {}).items():
        if Path(p).is_file():
            dst = Path(f"{stem}_{target}.png")
            shutil.copyfile(p, dst)
            plots[(part, target)] = dst.name
    if any(r["part"] == "text" for r in rows):
        plots.update(text_plots(rows, args.shots, stem))
    cmd = "python benchmarks/miniature.py " + " ".join(shlex.quote(a) for a in argv)
    k1 = seeds_at(args)
    md = [f"# Miniature benchmark ({env['device']})\n",
          f"- device: {env['device']} ({env['device_name']}), torch {env['torch']}, {env['cpu_threads']} CPU threads",
          f"- git commit: `{env['git_commit']}`", f"- date: {env['time_utc']}",
          *([f"- CLIP weights: `{args.clip_weights}` (not the shipped tiny-clip)"] if getattr(args, "clip_weights", None) else []),
          *([f"- T5 weights: `{args.text_backbone}` (not the shipped tiny-t5)"] if getattr(args, "text_backbone", None) else []),
          f"- wall time: {wall_s / 60:.1f} min in all; " + "; ".join(f"{k} {v / 60:.1f} min" for k, v in meta["times"].items()),
          f"- command: `MVLPT_DATA={os.environ.get('MVLPT_DATA', '')} {cmd}`",
          f"- shots {list(args.shots)}, seeds {list(args.seeds)}" + (f" ({k1[1]} at K=1)" if k1 else "")
          + f"; text steps {args.text_steps}" + (f" (sources {args.text_source_steps})" if args.text_source_steps else "")
          + ("; text targets select on val between the start and the end" if getattr(args, "text_eval_at_start", False) else "")
          + f"; text sources {list(args.text_sources)}",
          "- paired differences: multitask − single-task baseline on the same K and seed; 95% percentile bootstrap "
          "CI of the mean over seeds (mvlpt/core/stats.py); ▲ / ▼ = CI entirely above / below 0",
          "", tables(rows, args.shots, meta.get("pairs"), meta.get("settings"), plots), "",
          "Per-run rows: " + Path(f"{stem}.csv").name, "", "## Stage commands (equivalent CLI)\n", "```",
          *log, "```", ""]
    Path(f"{stem}.md").write_text("\n".join(md))
    return Path(f"{stem}.md")


def new_meta() -> dict[str, Any]:
    return {"plots": {}, "pairs": {}, "times": {}, "settings": {}}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_common import environment, resolve_device

    import mvlpt.clip.pipeline  # noqa: F401  (before text_mpt: the report helpers live there)

    device = resolve_device(args.device)
    env = environment(device)
    os.environ.setdefault("MVLPT_DATA", str(ROOT.parent / "shared" / "data"))
    torch.manual_seed(0)
    t0 = time.perf_counter()
    rows: list[dict] = []
    meta = new_meta()
    log: list[str] = []
    if not args.skip_clip:
        for target in args.targets:  # a bad --lines / --sources / --eval-split stops here, before any training
            clip_overrides(args, device.type, target)
        rows += run_clip(args, device.type, log, meta)
    if not args.skip_text:
        rows += run_text(args, device.type, log, meta)
    path = write_report(args, argv, env, rows, meta, log, time.perf_counter() - t0)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
