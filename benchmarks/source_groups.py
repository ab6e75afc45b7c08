"""Which of a target's sources to transfer from, chosen on validation data (MVLPT's task grouping).

MVLPT's finding is that related source tasks help more than many. This measures it on the
miniature: for every non-empty group of a CLIP target's sources (``configs/clip/mini_<target>.yaml``)
it trains MVLPT's source recipe (one shared prompt over the group's classes) and adapts it few-shot to
the target (the ``MCoOp (MVLPT)`` line of ``benchmarks/miniature.py``), reporting the target's
**val** split (its training-pool rows not drawn as shots), never its test split. The table ranks the
groups by mean val accuracy over K and seeds, gives each group's paired difference against the
config's full group (same K, same seed, bootstrap CI; :mod:`mvlpt.core.stats`) and names the chosen
group; its test figures come from a separate ``miniature.py --sources ...`` run.

Selecting on the val split uses labelled target images beyond the K shots: a few-shot user would
choose the group by other means (MVLPT groups tasks by measured transfer on the benchmark). What the
table shows is whether the choice of sources matters, and which one the data favour.

    MVLPT_DATA=../shared/data python benchmarks/source_groups.py --target flowers5 --device cpu

Each group is one ``miniature.py`` process (1 CPU thread; ``--parallel`` of them side by side); its
files stay under ``--out-dir``, and a group that has already run there with the same shots and seeds
is reused when its ``settings.json`` matches (shots, seeds, context init, device: a stopped run
resumes, and adding a group runs only that one); the ranking goes to ``<results>/miniature_<tag>_<target>_source_groups.{md,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
MINIATURE = ROOT / "benchmarks" / "miniature.py"
LINE = "MCoOp (MVLPT)"
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="source_groups.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="CLIP target with a configs/clip/mini_<target>.yaml")
    p.add_argument("--groups", nargs="+", default=None, metavar="A+B",
                   help="groups to try, each sources joined by '+', from any miniature config's sources; the "
                        "target's full group always runs as the reference (default: every non-empty subset of it)")
    p.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--coop-init", choices=["config", "random"], default="random",
                   help="where the source's text context starts (miniature.py --coop-init)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=2, help="groups run side by side (1 CPU thread each)")
    p.add_argument("--out-dir", default="runs/source_groups", help="run directories and per-group logs")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="cpu")
    p.add_argument("--report-only", action="store_true",
                   help="re-make the ranking from the groups' files under --out-dir, running nothing")
    return p


def target_sources(target: str) -> list[str]:
    """The source names of ``target``'s miniature experiment (its config's order)."""
    import miniature

    if miniature.clip_config(target) is None:
        raise SystemExit(f"{target!r} has no configs/clip/mini_{target}.yaml: its sources are the shared fallback's")
    return [miniature.source_name(e) for e in miniature.config_sources(miniature.build_parser().parse_args([]), target)]


def pool_sources(target: str) -> list[str]:
    """Every source a group may name: the target's own first, then the other miniature experiments'."""
    import miniature

    return [miniature.source_name(e) for e in miniature.source_pool(miniature.build_parser().parse_args([]), target)]


def all_groups(sources: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``sources``, largest first, each in config order."""
    return [g for n in range(len(sources), 0, -1) for g in itertools.combinations(sources, n)]


def parse_groups(given: Sequence[str] | None, sources: Sequence[str],
                 pool: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """``--groups`` (``a+b`` each; any source of ``pool``, default ``sources``), the target's full
    group ``sources`` first as the reference; default :func:`all_groups`."""
    if not given:
        return all_groups(sources)
    pool = list(sources if pool is None else pool)
    groups = [tuple(s for s in g.split("+") if s) for g in given]
    bad = sorted({s for g in groups for s in g if s not in pool} | ({"(empty)"} if not all(groups) else set()))
    if bad:
        raise SystemExit(f"--groups: {bad} not among the miniature's sources {pool}")
    full = tuple(sources)
    return [full] + [g for g in dict.fromkeys(groups) if g != full]


def slug(group: Sequence[str]) -> str:
    return "+".join(group)


def group_command(args: argparse.Namespace, group: Sequence[str]) -> list[str]:
    """The ``miniature.py`` command of one group: its source recipe and the target line on val."""
    out = Path(args.out_dir) / args.target / slug(group)
    return [sys.executable, str(MINIATURE), "--device", args.device, "--skip-text", "--coop-only",
            "--coop-init", args.coop_init, "--lines", LINE, "--eval-split", "val", "--targets", args.target,
            "--sources", *group, "--shots", *map(str, args.shots), "--seeds", *map(str, args.seeds),
            "--k1-seeds", "--tag", "group", "--out-dir", str(out), "--results", str(out)]


def shown_command(args: argparse.Namespace, group: Sequence[str]) -> list[str]:
    """:func:`group_command` as a reader types it from the repository root (no interpreter path)."""
    cmd = group_command(args, group)[1:]
    return [str(MINIATURE.relative_to(ROOT))] + cmd[1:]


def group_commits(args: argparse.Namespace, groups: Sequence[tuple[str, ...]]) -> list[str]:
    """The distinct git commits the groups' own reports (``miniature_group.md``) name."""
    out = []
    for g in groups:
        path = Path(args.out_dir) / args.target / slug(g) / "miniature_group.md"
        lines = path.read_text().splitlines() if path.is_file() else []
        out += [ln.split("`")[1] for ln in lines if ln.startswith("- git commit: `")] or ["?"]
    return list(dict.fromkeys(out))


def group_wall(args: argparse.Namespace, group: Sequence[str]) -> float:
    """The wall seconds a group's run recorded (``wall_s.txt`` beside its runs)."""
    path = Path(args.out_dir) / args.target / slug(group) / "wall_s.txt"
    if not path.is_file():
        raise SystemExit(f"--report-only: group {slug(group)} has not run ({path} is missing)")
    return float(path.read_text())


def group_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a group's figures depend on beside its sources (``settings.json`` beside its runs)."""
    return {"shots": list(args.shots), "seeds": list(args.seeds), "coop_init": args.coop_init, "device": args.device}


def finished(args: argparse.Namespace, group: Sequence[str]) -> bool:
    """The group has run with these settings (:func:`group_settings`) and its rows cover them."""
    out = Path(args.out_dir) / args.target / slug(group)
    files = [out / n for n in ("wall_s.txt", "miniature_group.csv", "settings.json")]
    if not all(f.is_file() for f in files) or json.loads(files[2].read_text()) != group_settings(args):
        return False
    cells = {(r["shots"], r["seed"]) for r in read_group(args, group)}
    return cells == {(k, s) for k in args.shots for s in args.seeds}


def run_group(args: argparse.Namespace, group: Sequence[str]) -> tuple[float, bool]:
    """Run one group's process (log beside its runs): ``(wall seconds, reused)``. A group that has
    already run with these settings (:func:`finished`) is not run again: ``(its recorded wall, True)``.
    Raises on failure."""
    out = Path(args.out_dir) / args.target / slug(group)
    if finished(args, group):
        print(f"[{args.target}] group {slug(group)}: already run, reused", flush=True)
        return group_wall(args, group), True
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        rc = subprocess.run(group_command(args, group), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if rc:
        raise RuntimeError(f"group {slug(group)} failed (rc {rc}); see {out / 'log.txt'}")
    wall = time.perf_counter() - t0
    (out / "wall_s.txt").write_text(f"{wall:.1f}\n")
    (out / "settings.json").write_text(json.dumps(group_settings(args)) + "\n")
    return wall, False


def read_group(args: argparse.Namespace, group: Sequence[str]) -> list[dict[str, Any]]:
    """The group's target rows (``shots``, ``seed``, ``accuracy`` on val), labelled with the group."""
    path = Path(args.out_dir) / args.target / slug(group) / "miniature_group.csv"
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == LINE]
    return [{"group": slug(group), "shots": int(r["shots"]), "seed": int(r["seed"]),
             "accuracy": float(r["accuracy"]), "run_dir": r["run_dir"]} for r in rows]


def source_scores(args: argparse.Namespace, group: Sequence[str]) -> str:
    """The group's source run: accuracy % per source task of the prompt the target starts from, on
    the split its ``result.json`` names: the selected checkpoint (``best``, with its step) when the
    source selects on val, else the last step; e.g. ``cifar10 62.5 (val, 40, step 250)``."""
    path = Path(args.out_dir) / args.target / slug(group) / "clip" / args.target / "source_coop_mvlpt" / "result.json"
    if not path.is_file():
        return "—"
    res = json.loads(path.read_text())
    best = res.get("best") or {}
    scores, split = best.get("metrics") or res.get("final", {}), res.get("eval_split", "?")
    at = f", step {best['step']}" if best.get("metrics") and "step" in best else ", last step"
    return ", ".join(f"{s} {scores[f'{s}/accuracy']:.1f} ({split}, {scores.get(f'{s}/n', 0):.0f}{at})"
                     for s in group if f"{s}/accuracy" in scores) or "—"


def rank(rows: Sequence[dict[str, Any]], groups: Sequence[tuple[str, ...]], shots: Sequence[int]) -> list[dict[str, Any]]:
    """Per group: mean val accuracy per K and over all its cells, and the paired difference against
    the first (full) group over the shared (K, seed) cells (:func:`mvlpt.core.stats.paired_summary`);
    best mean first."""
    from mvlpt.core.stats import paired_summary

    full = slug(groups[0])
    labelled = [{**r, "method": r["group"]} for r in rows]
    out = []
    for g in map(slug, groups):
        mine = [r for r in rows if r["group"] == g]
        if not mine:
            continue
        rec: dict[str, Any] = {"group": g, "n": len(mine), "mean": sum(r["accuracy"] for r in mine) / len(mine)}
        for k in shots:
            vals = [r["accuracy"] for r in mine if r["shots"] == k]
            rec[f"K={k}"] = sum(vals) / len(vals) if vals else None
        if g != full:
            rec["paired"] = paired_summary(labelled, g, full, "accuracy")
        out.append(rec)
    return sorted(out, key=lambda r: -r["mean"])


def ranking_markdown(ranked: Sequence[dict[str, Any]], shots: Sequence[int], full: str, sources: dict[str, str]) -> str:
    cols = ["group"] + [f"K={k}" for k in shots] + ["mean", "n", f"Δ vs {full}", "95% CI", "wins/n",
                                                    "source prompt the target starts from: its tasks' accuracy % (split, n, step)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in ranked:
        ks = [f"{r[f'K={k}']:.1f}" if r.get(f"K={k}") is not None else "—" for k in shots]
        if "paired" in r:
            p = r["paired"]
            d = [f"{p['diff']:+.1f}{' ' + p['verdict'] if p['verdict'] else ''}",
                 f"[{p['ci_low']:+.1f}, {p['ci_high']:+.1f}]", f"{p['wins']}/{p['n']}"]
        else:
            d = ["(reference)", "", ""]
        lines.append("| " + " | ".join([f"`{r['group']}`", *ks, f"{r['mean']:.1f}", str(r["n"]), *d,
                                         sources.get(r["group"], "—")]) + " |")
    return "\n".join(lines)


def write_report(args: argparse.Namespace, argv: Sequence[str], groups: Sequence[tuple[str, ...]],
                 rows: Sequence[dict[str, Any]], walls: dict[str, tuple[float, bool]], wall_s: float) -> Path:
    from bench_common import environment, resolve_device

    env = environment(resolve_device(args.device))
    ranked = rank(rows, groups, args.shots)
    full = slug(groups[0])
    best = ranked[0]["group"]
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    stem = res / f"miniature_{args.tag}_{args.target}_source_groups"
    with open(f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["group", "shots", "seed", "accuracy", "run_dir"])
        w.writeheader()
        w.writerows(rows)
    sources = {slug(g): source_scores(args, g) for g in groups}
    cmd = "python benchmarks/source_groups.py " + " ".join(shlex.quote(a) for a in argv if a != "--report-only")
    md = [f"# Source groups for {args.target}: MVLPT's task grouping, chosen on val\n",
          f"- device: {env['device']} ({env['device_name']}), torch {env['torch']}, 1 CPU thread per group, "
          f"{args.parallel} group{'s' if args.parallel > 1 else ''} at a time",
          f"- git commit of the group runs: {', '.join(f'`{c}`' for c in group_commits(args, groups))}; of this report: "
          f"`{env['git_commit']}`", f"- date: {env['time_utc']}",
          (f"- wall time: {wall_s / 60:.1f} min for this invocation; " if wall_s else "- wall time (groups run earlier, "
           "this report re-made from their files with --report-only): ")
          + "per group " + ", ".join(f"`{g}` {s / 60:.1f}" + (" (reused)" if reused and wall_s else "")
                                     for g, (s, reused) in walls.items()) + " min",
          f"- command: `MVLPT_DATA={os.environ.get('MVLPT_DATA', '')} {cmd}`",
          f"- line: {LINE} (MVLPT's source recipe on the group, then few-shot CoOp on {args.target} from it); "
          f"text context from {'random init' if args.coop_init == 'random' else 'the config'}; shots {list(args.shots)}, "
          f"seeds {list(args.seeds)}; schedules of `configs/clip/mini_{args.target}.yaml`",
          f"- **reported split: {args.target}'s val** (its training-pool images not drawn as shots), not test; "
          "Δ: mean over the shared (K, seed) cells of (group − full group) val accuracy, 95% percentile bootstrap CI "
          "(10,000 resamples); ▲ / ▼ = CI above / below 0",
          "", ranking_markdown(ranked, args.shots, full, sources), "",
          f"**Chosen on val: `{best}`**" + (" (the config's full group)" if best == full else "")
          + f". Its test figures: `python benchmarks/miniature.py --skip-text --coop-only --coop-init {args.coop_init} "
          f"--targets {args.target} --sources {' '.join(best.split('+'))} ...`.", "",
          f"Per-run rows: {Path(f'{stem}.csv').name}. Each group's command: "
          f"`python {' '.join(shlex.quote(a) for a in shown_command(args, groups[0]))}` (its sources after --sources).", ""]
    Path(f"{stem}.md").write_text("\n".join(md))
    return Path(f"{stem}.md")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MVLPT_DATA", str(ROOT.parent / "shared" / "data"))
    groups = parse_groups(args.groups, target_sources(args.target), pool_sources(args.target))
    t0 = time.perf_counter()
    walls: dict[str, tuple[float, bool]] = {}
    if args.report_only:
        walls = {slug(g): (group_wall(args, g), True) for g in groups}
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            futures = {slug(g): pool.submit(run_group, args, g) for g in groups}
            for name, fut in futures.items():
                walls[name] = fut.result()
                if not walls[name][1]:
                    print(f"[{args.target}] group {name}: {walls[name][0] / 60:.1f} min", flush=True)
    rows = [r for g in groups for r in read_group(args, g)]
    path = write_report(args, argv, groups, rows, walls, 0.0 if args.report_only else time.perf_counter() - t0)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
