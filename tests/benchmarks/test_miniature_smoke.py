"""benchmarks/miniature.py: --help and argument parsing only (no training)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "miniature.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_miniature", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_runs():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--shots" in out.stdout and "--skip-text" in out.stdout


def test_defaults_are_the_full_protocol():
    args = _load().build_parser().parse_args([])
    assert args.shots == [1, 2, 4, 8, 16] and args.seeds == [1, 2, 3]
    assert args.targets == ["flowers5", "sign_digits"] and args.text_targets == ["rte", "mrpc"]
    assert not args.skip_text and not args.upt


def test_reduced_run_arguments_and_clip_overrides():
    mod = _load()
    args = mod.build_parser().parse_args(["--shots", "1", "4", "16", "--seeds", "1", "--skip-text", "--upt",
                                          "--teacher-steps", "7", "--fewshot-steps", "5"])
    assert args.shots == [1, 4, 16] and args.seeds == [1] and args.skip_text
    ov = dict(o.split("=", 1) for o in mod.clip_overrides(args, "cpu", "sign_digits"))
    assert ov["stages.teachers.train.max_steps"] == "7" and "train.max_steps" not in ov
    assert yaml.safe_load(ov["sweep.shots"]) == [1, 4, 16] and yaml.safe_load(ov["sweep.seeds"]) == [1]
    assert ov["target.dataset"] == "sign_digits" and "target" not in ov  # a whole mapping would reset K
    methods = yaml.safe_load(ov["sweep.methods"])
    assert [m["name"] for m in methods] == ["ZS-CLIP", "CoOp", "VPT", "MCoOp", "MVPT", "UPT", "MUPT"]
    assert all(m["overrides"]["train"]["max_steps"] == 5 for m in methods if m["stage"] != "zeroshot")


def test_table_is_mean_std_per_method_and_shots():
    rows = [{"part": "text", "target": "rte", "method": m, "shots": k, "seed": s, "accuracy": a}
            for m, k, s, a in [("MPT", 1, 1, 50.0), ("MPT", 1, 2, 60.0), ("PT", 1, 1, 40.0), ("PT", 1, 2, 40.0)]]
    md = _load().tables(rows, [1])
    assert "| MPT | 55.0 ± 7.1 |" in md and "| PT | 40.0 ± 0.0 |" in md


def test_distillation_ablation_adds_a_target_method_from_the_undistilled_source():
    mod = _load()
    args = mod.build_parser().parse_args(["--distill-ablation", "--fewshot-steps", "5", "--out-dir", "runs/m"])
    methods = yaml.safe_load(dict(o.split("=", 1) for o in mod.clip_overrides(args, "cpu", "flowers5"))["sweep.methods"])
    ablation = [m for m in methods if m["name"] == "MCoOp (no distill)"]
    assert len(ablation) == 1 and ablation[0]["stage"] == "target"
    assert ablation[0]["overrides"]["source_path"].endswith(mod.NO_DISTILL_SOURCE)
    assert not mod.build_parser().parse_args([]).distill_ablation
