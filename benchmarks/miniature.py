"""The miniature benchmark (issue 6): multitask prompt transfer vs single-task prompts, small.

Two parts, both through the existing pipelines (no training code here):

1. **CLIP** — ``mvlpt experiment`` on ``configs/clip/mini_shared.yaml`` (teachers → source on
   cifar10 / mnist / fashion_mnist / easy-vqa, then the few-shot sweep) for the first target, and
   ``mvlpt fewshot`` (reusing the same source runs) for the others. Methods: zero-shot CLIP,
   CoOp, VPT (single task, from scratch) and MCoOp, MVPT (from the multitask source); ``--upt``
   adds UPT / MUPT.
2. **Text** — ``text-mpt teachers`` → ``source`` on the tiny configs (``configs/text/tiny``), then
   per target (RTE, MRPC), shots and seed: ``text-mpt adapt`` from the source (MPT) against the
   single-task baseline, the same adapt stage with a vanilla prompt from random init
   (``prompt.kind=vanilla prompt.init=random``: PT). ``--skip-text`` leaves it out.

Output: ``benchmarks/results/miniature_<device>.md`` (mean ± std tables, device, git commit,
wall time, the exact command), ``.csv`` (one line per run) and ``_<target>.png`` (sweep plots).

    MVLPT_DATA=../shared/data python benchmarks/miniature.py --shots 1 4 16 --seeds 1   # CPU, reduced
    MVLPT_DATA=../shared/data python benchmarks/miniature.py --device cuda               # full: 1 2 4 8 16 × 1 2 3
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLIP_CONFIG = ROOT / "configs" / "clip" / "mini_shared.yaml"
TEXT_CONFIGS = ROOT / "configs" / "text" / "tiny"
TINY_T5_DIR = ROOT / "text_mpt" / "weights" / "tiny-t5"

CLIP_METHODS = [
    {"name": "ZS-CLIP", "stage": "zeroshot"},
    {"name": "CoOp", "stage": "single", "method": "coop"},
    {"name": "VPT", "stage": "single", "method": "vpt"},
    {"name": "MCoOp", "stage": "target", "method": "coop"},
    {"name": "MVPT", "stage": "target", "method": "vpt"},
]
#: run directory (under the CLIP output dir) of the source stage trained without distillation
NO_DISTILL_SOURCE = "source_coop_nodistill"
UPT_METHODS = [{"name": "UPT", "stage": "single", "method": "upt"},
               {"name": "MUPT", "stage": "target", "method": "upt"}]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="miniature.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=["flowers5", "sign_digits"], help="CLIP target datasets")
    p.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16], help="shots per class (K)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--upt", action="store_true", help="also UPT / MUPT (one more teachers+source pair)")
    p.add_argument("--teacher-steps", type=int, default=300, help="CLIP teachers stage steps")
    p.add_argument("--source-steps", type=int, default=300, help="CLIP source stage steps")
    p.add_argument("--fewshot-steps", type=int, default=100, help="steps of each few-shot run (CLIP)")
    p.add_argument("--source-max-eval", type=int, default=500, help="eval examples per CLIP source task")
    p.add_argument("--target-max-eval", type=int, default=500, help="eval examples of the CLIP target")
    p.add_argument("--vqa-max-train", type=int, default=4000, help="easy-vqa training questions (source)")
    p.add_argument("--distill-ablation", action="store_true",
                   help="also a source stage without distillation (kl_weight = mse_weight = 0) and the target "
                        "methods adapted from it (MCoOp / MPT 'no distill'), beside the distilled ones")
    p.add_argument("--skip-clip", action="store_true")
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--text-targets", nargs="+", default=["rte", "mrpc"])
    p.add_argument("--text-steps", type=int, default=40, help="steps of each text stage / adapt run")
    p.add_argument("--text-source-train", type=int, default=64, help="training examples per text source task")
    p.add_argument("--text-max-eval", type=int, default=64, help="eval examples per text task")
    p.add_argument("--out-dir", default="runs/miniature", help="run directories")
    p.add_argument("--results", default=str(RESULTS), help="where miniature_<device>.{md,csv,png} go")
    p.add_argument("--tag", default=None, help="file name tag (default: the device type)")
    return p


def _flow(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


# --------------------------------------------------------------------------------------------- CLIP


def clip_overrides(args: argparse.Namespace, device: str, target: str) -> list[str]:
    """``mvlpt`` overrides of the miniature: sweep, step counts, evaluation caps, the target."""
    # the few-shot step count goes into each trained method's overrides: a command-line
    # ``train.max_steps`` would be re-applied last and also override the teachers/source stages
    methods = [m if m["stage"] == "zeroshot" else {**m, "overrides": {"train": {"max_steps": args.fewshot_steps}}}
               for m in CLIP_METHODS + (UPT_METHODS if args.upt else [])]
    if getattr(args, "distill_ablation", False):  # the same target stage, adapted from the undistilled source
        methods.append({"name": "MCoOp (no distill)", "stage": "target", "method": "coop",
                        "overrides": {"train": {"max_steps": args.fewshot_steps},
                                      "source_path": str(Path(args.out_dir) / "clip" / NO_DISTILL_SOURCE)}})
    sources = [{"dataset": "cifar10", "shots": 16, "max_eval": args.source_max_eval},
               {"dataset": "mnist", "shots": 16, "max_eval": args.source_max_eval, "hflip": False},
               {"dataset": "fashion_mnist", "shots": 16, "max_eval": args.source_max_eval},
               {"dataset": "easy_vqa", "max_train": args.vqa_max_train, "max_eval": args.source_max_eval}]
    return [f"output_dir={args.out_dir}/clip", f"train.device={device}",
            f"sources={_flow(sources)}",
            # dotted keys, not a whole ``target=`` mapping: overrides are re-applied last to every
            # stage config, and a whole mapping would reset the sweep's per-cell shots / seed
            f"target.dataset={target}", f"target.max_eval={args.target_max_eval}",
            f"stages.teachers.train.max_steps={args.teacher_steps}",
            f"stages.source.train.max_steps={args.source_steps}",
            f"sweep.shots={_flow(args.shots)}", f"sweep.seeds={_flow(args.seeds)}",
            f"sweep.methods={_flow(methods)}"]


def run_clip(args: argparse.Namespace, device: str, log: list[str]) -> tuple[list[dict], dict[str, Path]]:
    """The experiment on the first target, the few-shot sweep (same sources) on the others."""
    from mvlpt.clip.pipeline import BackbonePool, ensure_backbone, load_run_config, run_fewshot, run_sources

    pool = BackbonePool()
    rows: list[dict] = []
    plots: dict[str, Path] = {}
    for i, target in enumerate(args.targets):
        ov = clip_overrides(args, device, target)
        cmd = "experiment" if i == 0 else "fewshot"
        log.append(f"MVLPT_DATA={os.environ.get('MVLPT_DATA', '')} mvlpt {cmd} --config "
                   f"{CLIP_CONFIG.relative_to(ROOT)} " + " ".join(shlex.quote(o) for o in ov))
        cfg = ensure_backbone(load_run_config(CLIP_CONFIG, ov), print)
        if i == 0:
            run_sources(cfg, pool, print)  # = the first half of run_experiment, sharing the pool
            if args.distill_ablation:
                from mvlpt.clip.pipeline import config_for_stage, run_stage

                scfg = config_for_stage(cfg, "source", {
                    "prompt": {"method": "coop"}, "run_dir": str(Path(args.out_dir) / "clip" / NO_DISTILL_SOURCE),
                    "train": {"distill": {"kl_weight": 0.0, "mse_weight": 0.0}}})
                res = run_stage(scfg, pool.get(scfg.backbone))
                print(f"[source · coop · no distillation] {res.metrics}", flush=True)
                log.append(f"# and, before the sweep, the same source stage without distillation: mvlpt source --config "
                           f"{CLIP_CONFIG.relative_to(ROOT)} <the overrides above> prompt.method=coop "
                           f"run_dir={scfg.run_dir} train.distill.kl_weight=0 train.distill.mse_weight=0")
        out = run_fewshot(cfg, pool, progress=False)
        print(out["table"], flush=True)
        rows += [{"part": "clip", "target": target, **r} for r in out["rows"]]
        plots[target] = Path(out["paths"]["plot"])
    return rows, plots


# --------------------------------------------------------------------------------------------- text


def text_backbone_overrides() -> list[str]:
    """The pretrained tiny T5 when ``text_mpt/weights/tiny-t5`` holds a loadable one, else none
    (the configs' seeded random tiny T5)."""
    if not (TINY_T5_DIR / "config.json").is_file():
        return []
    from text_mpt.backbone import load_backbone
    from text_mpt.config import load_run_config

    tok = str(TINY_T5_DIR) if any(TINY_T5_DIR.glob("*token*")) or (TINY_T5_DIR / "spiece.model").is_file() else "byt5"
    ov = [f"backbone.name={TINY_T5_DIR}", f"backbone.tokenizer={tok}"]
    try:
        load_backbone(load_run_config(TEXT_CONFIGS / "teachers.yaml", ov).backbone)
    except Exception as e:  # any failure → the random tiny T5, with a notice
        print(f"note: {TINY_T5_DIR} is not loadable ({e}); using the random tiny T5", flush=True)
        return []
    return ov


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


def run_text(args: argparse.Namespace, device: str, log: list[str]) -> list[dict]:
    """Teachers → source on the tiny configs' sources, then MPT vs PT per target × K × seed."""
    data_root = os.environ.get("MVLPT_DATA") or str(ROOT.parent / "shared" / "data")
    out = Path(args.out_dir) / "text"
    common = [f"data_root={data_root}", f"train.device={device}", f"train.max_steps={args.text_steps}"]
    common += text_backbone_overrides()
    tasks = [{"name": t, "max_train_examples": args.text_source_train, "max_eval_examples": args.text_max_eval}
             for t in ("sst2", "qnli")]
    _text_stage(TEXT_CONFIGS / "teachers.yaml", common + [f"output_dir={out}/teachers", f"tasks={_flow(tasks)}"], log)
    _text_stage(TEXT_CONFIGS / "source.yaml", common + [f"output_dir={out}/source", f"teacher_path={out}/teachers",
                                                        f"tasks={_flow(tasks)}"], log)
    methods = {"MPT": [f"prompt.source_path={out}/source"],
               "PT": ["prompt.kind=vanilla", "prompt.init=random", "prompt.source_path=null"]}
    if args.distill_ablation:  # the same source stage without distillation, and MPT adapted from it
        _text_stage(TEXT_CONFIGS / "source.yaml", common + [f"output_dir={out}/source_nodistill", f"tasks={_flow(tasks)}",
                                                            "train.distill.kl_weight=0", "train.distill.mse_weight=0"], log)
        methods["MPT (no distill)"] = [f"prompt.source_path={out}/source_nodistill"]
    rows = []
    first = True
    for task in args.text_targets:
        for k in args.shots:
            for seed in args.seeds:
                for name, extra in methods.items():
                    run = out / f"{task}_{name.lower()}_k{k}_s{seed}"
                    ov = common + [f"output_dir={run}", f"tasks={_flow([{'name': task, 'max_eval_examples': args.text_max_eval}])}",
                                   f"few_shot_k={k}", f"few_shot_seed={seed}", f"train.seed={seed}"] + extra
                    t0 = time.perf_counter()
                    res = _text_stage(TEXT_CONFIGS / "adapt.yaml", ov, log if first else None)
                    rows.append({"part": "text", "target": task, "method": name, "shots": k, "seed": seed,
                                 "accuracy": 100.0 * _score(res["metrics"], task),  # fraction → % "steps": res["step"],
                                 "time_s": round(time.perf_counter() - t0, 2), "run_dir": str(run)})
                    print(f"[text] {task} {name} K={k} seed={seed}: {rows[-1]['accuracy']:.1f}", flush=True)
                first = False
    if log and not log[-1].startswith("#"):
        log.append("# (the two adapt lines above, MPT then PT, are repeated for every text target, "
                   "K = few_shot_k and seed)")
    return rows


# --------------------------------------------------------------------------------------------- report


def tables(rows: Sequence[dict], shots: Sequence[int]) -> str:
    """Markdown tables (mean ± std over seeds) per part and target."""
    from mvlpt.clip.pipeline.report import pivot, summarize

    out = []
    for part, target in dict.fromkeys((r["part"], r["target"]) for r in rows):
        sub = [r for r in rows if r["part"] == part and r["target"] == target]
        piv = pivot(summarize(sub, "accuracy"), shots)
        cols = ["method"] + [f"K={k}" for k in shots]
        head = ("CLIP few-shot transfer", "accuracy %") if part == "clip" else (
            "Text (tiny T5): MPT vs single-task PT", "task score %: accuracy; MRPC: mean of accuracy and F1")
        out.append(f"### {head[0]} → {target} ({head[1]}, mean ± std over seeds)\n")
        out.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in piv]
        out.append("")
    return "\n".join(out)


def write_report(args: argparse.Namespace, argv: Sequence[str], env: dict, rows: list[dict],
                 plots: dict[str, Path], log: list[str], wall_s: float) -> Path:
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    stem = res / f"miniature_{args.tag or env['device']}"
    cols = ["part", "target", "method", "stage", "prompt", "shots", "seed", "accuracy", "steps", "time_s", "run_dir"]
    with open(f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    pngs = []
    for target, p in plots.items():
        if p.is_file():
            dst = Path(f"{stem}_{target}.png")
            shutil.copyfile(p, dst)
            pngs.append(dst.name)
    cmd = "python benchmarks/miniature.py " + " ".join(shlex.quote(a) for a in argv)
    md = [f"# Miniature benchmark ({env['device']})\n",
          f"- device: {env['device']} ({env['device_name']}), torch {env['torch']}, {env['cpu_threads']} CPU threads",
          f"- git commit: `{env['git_commit']}`", f"- date: {env['time_utc']}",
          f"- wall time: {wall_s / 60:.1f} min",
          f"- command: `MVLPT_DATA={os.environ.get('MVLPT_DATA', '')} {cmd}`",
          f"- shots {list(args.shots)}, seeds {list(args.seeds)}; CLIP steps: teachers {args.teacher_steps}, "
          f"source {args.source_steps}, few-shot {args.fewshot_steps}; text steps {args.text_steps}",
          "", tables(rows, args.shots), "", "Plots: " + (", ".join(pngs) or "none"), "",
          "Per-run rows: " + Path(f"{stem}.csv").name, "", "## Stage commands (equivalent CLI)\n", "```",
          *log, "```", ""]
    Path(f"{stem}.md").write_text("\n".join(md))
    return Path(f"{stem}.md")


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
    plots: dict[str, Path] = {}
    log: list[str] = []
    if not args.skip_clip:
        r, plots = run_clip(args, device.type, log)
        rows += r
    if not args.skip_text:
        rows += run_text(args, device.type, log)
    path = write_report(args, argv, env, rows, plots, log, time.perf_counter() - t0)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
