"""benchmarks/tiny_t5_bar.py: the bar's verdicts, each check's run overrides, and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tiny_t5_bar.py"


@pytest.fixture(scope="module")
def bar():
    spec = importlib.util.spec_from_file_location("bench_tiny_t5_bar", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_teachers_need_ten_points_over_the_majority_and_pt_only_to_beat_it(bar):
    teacher, pt = bar.CHECKS["teacher_qnli"], bar.CHECKS["pt_rte"]
    assert teacher.met(62.0, 52.0) and not teacher.met(61.9, 52.0)
    assert pt.met(56.9, 56.8) and not pt.met(56.8, 56.8)


def test_each_check_runs_its_own_stage_on_its_task(bar):
    args = bar.build_parser().parse_args(["--backbone", "some/export", "--steps", "7", "--lr", "0.1",
                                           "--prompt-length", "32"])
    teacher = bar.overrides(bar.CHECKS["teacher_sst2"], args, "/data")
    assert "tasks=[{max_train_examples: 2000, name: sst2}]" in teacher
    assert [o for o in teacher if o.startswith("prompt.")] == ["prompt.length=32"]  # the teachers config's own prompt
    pt = bar.overrides(bar.CHECKS["pt_mrpc"], args, "/data")
    assert "tasks=[{name: mrpc}]" in pt  # PT: the full training data
    assert {"prompt.kind=vanilla", "prompt.init=random", "prompt.source_path=null", "few_shot_k=0"} <= set(pt)
    for ov in (teacher, pt):
        assert f"backbone.name={Path('some/export').resolve()}" in ov and "backbone.tokenizer=null" in ov
        assert {"data_root=/data", "train.max_steps=7", "train.optim.lr=0.1", "prompt.length=32"} <= set(ov)
    capped = bar.overrides(bar.CHECKS["pt_rte"], bar.build_parser().parse_args(["--train-rows", "32", "--max-eval", "8"]),
                           "/data")
    assert "tasks=[{max_eval_examples: 8, max_train_examples: 32, name: rte}]" in capped
    assert not any(o.startswith("backbone.") for o in capped)  # the configs' shipped tiny-t5


def test_the_table_marks_what_clears_the_bar(bar):
    rows = [{"check": "teacher_sst2", "task": "sst2", "accuracy": 70.5, "majority": 52.6, "n": 346, "f1": None,
             "val_accuracy": 67.6, "val_majority": 50.0, "step": 400, "train_rows": 2000},
            {"check": "pt_rte", "task": "rte", "accuracy": 55.2, "majority": 56.8, "n": 125, "f1": None,
             "val_accuracy": 57.3, "val_majority": 50.0, "step": 300, "train_rows": 2240}]
    lines = bar.rows_markdown(rows)
    assert lines[2].endswith("| **yes** |") and "**70.5 %**" in lines[2]
    assert lines[3].endswith("| no |") and "| 55.2 % |" in lines[3] and "| 2,240 |" in lines[3]


def test_a_tiny_run_reports_the_test_part_of_its_selected_step(bar, shared_data: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MVLPT_DATA", str(shared_data))
    out = tmp_path / "bar.md"
    assert bar.main(["--checks", "pt_rte", "--steps", "2", "--eval-every", "1", "--train-rows", "16",
                     "--max-eval", "12", "--out-dir", str(tmp_path / "runs"), "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| pt_rte "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    test = next(json.loads(line) for line in (tmp_path / "runs" / "pt_rte" / "metrics.jsonl").read_text().splitlines()
                if json.loads(line).get("split") == "test")
    assert cells[3:6] == ["16", "12", f"{100 * test['rte/majority']:.1f} %"]
    assert cells[6].strip("*") == f"{100 * test['rte/accuracy']:.1f} %"
    assert cells[8] == str(test["checkpoint_step"])
