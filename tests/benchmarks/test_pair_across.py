"""benchmarks/pair_across.py: pairs two result files' methods on (K, seed), checks the few-shot splits."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pair_across.py"
FIELDS = ["part", "target", "method", "stage", "prompt", "shots", "seed", "accuracy", "run_dir"]


def _load():
    spec = importlib.util.spec_from_file_location("bench_pair_across", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _csv(path: Path, method: str, acc: dict[tuple[int, int], float], runs: Path | None = None,
         split_text: str = "{}") -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for (k, seed), a in acc.items():
            run = ""
            if runs is not None:
                d = runs / f"{method}_k{k}_s{seed}" / "splits"
                d.mkdir(parents=True)
                (d / f"t_k{k}_s{seed}.json").write_text(split_text)
                run = str(d.parent)
            w.writerow({"part": "clip", "target": "t", "method": method, "stage": "x", "prompt": "coop",
                        "shots": k, "seed": seed, "accuracy": a, "run_dir": run})
    return path


def test_pairs_on_k_and_seed_and_checks_the_splits(tmp_path):
    mod = _load()
    treat = {(1, s): 10.0 + s for s in (1, 2, 3)} | {(2, s): 20.0 for s in (1, 2)}
    base = {(1, s): 10.0 for s in (1, 2, 3, 4)} | {(2, s): 21.0 for s in (1, 2)}
    a = _csv(tmp_path / "a.csv", "M", treat, tmp_path / "ra")
    b = _csv(tmp_path / "b.csv", "C", base, tmp_path / "rb")
    out = tmp_path / "out.md"
    assert mod.main([str(a), "M", "random", str(b), "C", "template", "--out", str(out)]) == 0
    md = out.read_text()
    assert "same few-shot images: 5 of 5 pairs checked" in md
    rows = [line for line in md.splitlines() if line.startswith("| M, random |")]
    assert len(rows) == 2
    k1, k2 = (line.split(" | ") for line in rows)
    assert k1[2:6] == ["1", "12.0", "10.0", "+2.0 ▲"] and k1[7] == "3/3 (1 unpaired) |"  # seed 4 has no multitask run
    assert k2[2:6] == ["2", "20.0", "21.0", "-1.0 ▼"] and k2[7] == "0/2 |"


def test_a_pair_trained_on_different_images_is_an_error(tmp_path):
    mod = _load()
    a = _csv(tmp_path / "a.csv", "M", {(2, 3): 1.0}, tmp_path / "ra", split_text="{}")
    b = _csv(tmp_path / "b.csv", "C", {(2, 3): 1.0}, tmp_path / "rb", split_text="{ }")
    with pytest.raises(SystemExit, match="different few-shot splits"):
        mod.main([str(a), "M", "x", str(b), "C", "y"])


def test_without_run_directories_the_pairs_are_counted_unchecked(tmp_path):
    mod = _load()
    a = _csv(tmp_path / "a.csv", "M", {(1, 1): 2.0, (1, 2): 3.0})
    b = _csv(tmp_path / "b.csv", "C", {(1, 1): 1.0, (1, 2): 1.0})
    out = tmp_path / "o.md"
    mod.main([str(a), "M", "x", str(b), "C", "y", "--out", str(out)])
    assert "not checked for any of the 2 pairs (run directories absent)" in out.read_text()
    with pytest.raises(SystemExit, match="no rows of method 'Z'"):
        mod.main([str(a), "Z", "x", str(b), "C", "y"])
