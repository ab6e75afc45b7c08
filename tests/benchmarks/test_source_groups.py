"""benchmarks/source_groups.py: the groups, each group's miniature command, the ranking (no training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_source_groups", BENCH / "source_groups.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_non_empty_group_of_the_configs_sources_full_group_first():
    mod = _load()
    src = mod.target_sources("flowers5")
    assert src == ["cifar10", "caltech101", "easy_vqa_color"]  # configs/clip/mini_flowers5.yaml
    groups = mod.all_groups(src)
    assert len(groups) == 7 and groups[0] == tuple(src) and len(set(groups)) == 7
    assert ("caltech101",) in groups and ("cifar10", "easy_vqa_color") in groups
    # --groups: checked against the config, the full group always first (the reference)
    assert mod.parse_groups(["caltech101", "cifar10+caltech101"], src) == [tuple(src), ("caltech101",),
                                                                          ("cifar10", "caltech101")]
    with pytest.raises(SystemExit, match="mnist"):
        mod.parse_groups(["mnist"], src)
    # beyond the target's own: any miniature experiment's source, the full group still first
    pool = mod.pool_sources("flowers5")
    assert pool[:3] == src and {"mnist", "fashion_mnist", "digits"} <= set(pool)
    assert mod.parse_groups(["+".join(pool)], src, pool) == [tuple(src), tuple(pool)]
    with pytest.raises(SystemExit, match="shared fallback"):
        mod.target_sources("no_such_target")


def test_a_groups_command_reports_mvlpt_transfer_on_val_never_test():
    mod = _load()
    args = mod.build_parser().parse_args(["--target", "flowers5", "--seeds", "1", "2", "--out-dir", "runs/g"])
    cmd = mod.group_command(args, ("cifar10", "caltech101"))
    i = cmd.index("--sources")
    assert cmd[i + 1:i + 3] == ["cifar10", "caltech101"] and cmd[i + 3].startswith("--")
    assert cmd[cmd.index("--eval-split") + 1] == "val" and "test" not in cmd
    assert cmd[cmd.index("--lines") + 1] == "MCoOp (MVLPT)" and cmd[cmd.index("--coop-init") + 1] == "random"
    assert cmd[cmd.index("--out-dir") + 1] == str(Path("runs/g/flowers5/cifar10+caltech101"))
    # the command parses as a miniature run with exactly those settings
    mini = importlib.import_module("miniature")
    margs = mini.build_parser().parse_args(cmd[2:])
    assert margs.sources == ["cifar10", "caltech101"] and margs.seeds == [1, 2] and mini.seeds_at(margs) == {}
    assert [m["name"] for m in mini.clip_lines(margs)] == ["MCoOp (MVLPT)"]


def test_ranking_pairs_each_group_with_the_full_group_on_the_same_cells():
    mod = _load()
    groups = [("a", "b"), ("a",), ("b",)]
    rows = []
    for seed in (1, 2, 3):
        for k in (1, 2):
            base = 30.0 + k + seed
            rows += [{"group": "a+b", "shots": k, "seed": seed, "accuracy": base},
                     {"group": "a", "shots": k, "seed": seed, "accuracy": base + 2.0 + 0.1 * seed},
                     {"group": "b", "shots": k, "seed": seed, "accuracy": base - 1.0 + 0.1 * seed}]
    ranked = mod.rank(rows, groups, [1, 2])
    assert [r["group"] for r in ranked] == ["a", "a+b", "b"]
    a = ranked[0]
    assert a["n"] == 6 and a["K=1"] == pytest.approx(33.0 + 2.2) and a["mean"] == pytest.approx(33.5 + 2.2)
    assert a["paired"]["n"] == 6 and a["paired"]["diff"] == pytest.approx(2.2) and a["paired"]["verdict"] == "▲"
    assert ranked[2]["paired"]["diff"] == pytest.approx(-0.8) and ranked[2]["paired"]["verdict"] == "▼"
    assert "paired" not in ranked[1]  # the reference
    md = mod.ranking_markdown(ranked, [1, 2], "a+b", {"a": "a 50.0"})
    lines = md.splitlines()
    assert lines[2].startswith("| `a` |") and "+2.2 ▲" in lines[2] and "6/6" in lines[2] and "a 50.0" in lines[2]
    assert "(reference)" in lines[3]


def test_report_only_remakes_the_ranking_from_the_groups_files(tmp_path):
    """--report-only runs nothing: it reads each group's rows, wall time, commit and source result
    (accuracy already in %, with its split and n) and names the group with the best val mean."""
    import json

    mod = _load()
    groups = {"cifar10+caltech101+easy_vqa_color": 30.0, "cifar10": 32.0}
    for g, acc in groups.items():
        d = tmp_path / "flowers5" / g
        (d / "clip" / "flowers5" / "source_coop_mvlpt").mkdir(parents=True)
        rows = ["part,target,method,stage,prompt,shots,seed,accuracy,params,steps,time_s,run_dir"]
        rows += [f"clip,flowers5,MCoOp (MVLPT),target,coop,{k},{s},{acc + s},,300,1.0,r" for k in (1, 2, 4) for s in (1, 2)]
        (d / "miniature_group.csv").write_text("\n".join(rows) + "\n")
        (d / "wall_s.txt").write_text("90.0\n")
        (d / "miniature_group.md").write_text("# x\n\n- git commit: `abc123`\n")
        res = {"final": {"cifar10/accuracy": 57.5, "cifar10/n": 40.0}, "eval_split": "val"}
        if g == "cifar10":  # a source that selected a checkpoint: the target starts from that one
            res["best"] = {"step": 250, "metrics": {"cifar10/accuracy": 60.0, "cifar10/n": 40.0}}
        (d / "clip" / "flowers5" / "source_coop_mvlpt" / "result.json").write_text(json.dumps(res))
    with pytest.raises(SystemExit, match="has not run"):
        mod.main(["--target", "flowers5", "--groups", "caltech101", "--report-only",
                  "--out-dir", str(tmp_path), "--results", str(tmp_path / "res")])
    mod.main(["--target", "flowers5", "--groups", "cifar10", "--report-only",
              "--out-dir", str(tmp_path), "--results", str(tmp_path / "res")])
    md = (tmp_path / "res" / "miniature_cpu_flowers5_source_groups.md").read_text()
    assert "**Chosen on val: `cifar10`**" in md and "+2.0 ▲" in md and "6/6" in md
    assert "cifar10 60.0 (val, 40, step 250)" in md and "cifar10 57.5 (val, 40, last step)" in md
    assert "`abc123`" in md and "`cifar10` 1.5" in md
    assert "--report-only" not in md.split("- command:")[1].splitlines()[0]


def test_a_group_that_ran_with_the_same_settings_is_reused_and_only_then(tmp_path):
    import json

    mod = _load()
    args = mod.build_parser().parse_args(["--target", "flowers5", "--shots", "1", "--seeds", "1", "2",
                                          "--out-dir", str(tmp_path)])
    d = tmp_path / "flowers5" / "cifar10"
    d.mkdir(parents=True)
    assert not mod.finished(args, ("cifar10",))
    (d / "miniature_group.csv").write_text("part,target,method,stage,prompt,shots,seed,accuracy,params,steps,time_s,run_dir\n"
                                           + "".join(f"clip,flowers5,MCoOp (MVLPT),target,coop,1,{s},30.0,,1,1,r\n" for s in (1, 2)))
    (d / "wall_s.txt").write_text("12.5\n")
    (d / "settings.json").write_text(json.dumps(mod.group_settings(args)))
    assert mod.finished(args, ("cifar10",)) and mod.run_group(args, ("cifar10",)) == (12.5, True)  # reused, nothing run
    for other in (["--seeds", "1", "2", "3"], ["--coop-init", "config"]):
        changed = mod.build_parser().parse_args(["--target", "flowers5", "--shots", "1", "--seeds", "1", "2",
                                                 "--out-dir", str(tmp_path), *other])
        assert not mod.finished(changed, ("cifar10",))
