"""benchmarks/tiny_t5_fit.py: its held-out rows are pretraining's (the shipped weights' recorded rank accuracy)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tiny_t5_fit.py"


def test_held_out_rows_reproduce_the_recorded_rank_accuracy(shared_data: Path, capsys, monkeypatch):
    monkeypatch.setenv("MVLPT_DATA", str(shared_data))
    spec = importlib.util.spec_from_file_location("bench_tiny_t5_fit", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--train-rows", "16", "--threads", "1"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| /")]
    from text_mpt import pretrain

    meta = json.loads((pretrain.PACKAGE_DIR / "metadata.json").read_text())
    assert [r[1] for r in rows] == meta["config"]["data"]["supervised"]
    for _, task, held, train in rows:
        acc, n = float(held.split(" %")[0]), int(held.rstrip(") |").split(", ")[-1])
        assert n == meta["data_stats"]["rank_eval_rows"][task]
        assert acc == pytest.approx(100 * meta["final_eval"][f"{task}/rank_acc"], abs=250 / n), task
        assert train.rstrip(" |").endswith(", 16)")
