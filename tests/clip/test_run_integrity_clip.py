"""Run integrity through the CLIP pipeline: a finished run refuses another config (naming the key),
returns its result for the same config, retrains with ``fresh``; the sweep skips a cell only when its
recorded config fingerprint matches (issue 14, finding 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clip_helpers import tiny_run
from mvlpt.clip.pipeline import config_for_stage, load_run_config, run_stage, sweep
from mvlpt.clip.backbone import create_backbone
from mvlpt.clip.pipeline.stages import StageResult
from mvlpt.core.logging_utils import read_metrics
from mvlpt.core.run_dir import RunConfigMismatchError


def _cfg(root: Path, *overrides: str):
    data = tiny_run(root, prompt={"method": "coop", "text": {"length": 4}},
                    train={"batch_size": 16, "eval_batch_size": 64, "max_steps": 3, "log_every": 1,
                           "clip_grad_norm": 0.0, "optim": {"name": "adamw", "lr": 0.05, "weight_decay": 0.0},
                           "schedule": {"name": "constant"}},
                    target={"dataset": "digits", "max_train": 32, "max_eval": 32, "hflip": False},
                    run_dir=str(root / "run"))
    return config_for_stage(load_run_config(None, list(overrides), data=data), "single")


def test_changed_lr_on_a_finished_run_refuses_and_fresh_retrains(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    bb = create_backbone(cfg.backbone)
    first = run_stage(cfg, bb)
    run = first.run_dir
    saved = (run / "config.json").read_text()
    assert "config fingerprint `" in (run / "results.md").read_text()

    with pytest.raises(RunConfigMismatchError, match=r"train\.optim\.lr: 0\.05 → 0\.5") as e:
        run_stage(_cfg(tmp_path, "train.optim.lr=0.5"), bb)
    assert "--fresh" in str(e.value)
    assert (run / "config.json").read_text() == saved  # provenance not rewritten

    capsys.readouterr()
    again = run_stage(_cfg(tmp_path), bb)
    assert "already finished at step 3; returning the saved result" in capsys.readouterr().out
    assert again.metrics == first.metrics

    fresh = run_stage(_cfg(tmp_path, "train.optim.lr=0.5", "fresh=true"), bb)
    assert "already finished" not in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["train"]["optim"]["lr"] == 0.5
    train = [r for r in read_metrics(run) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3] and all(r["lr"] == 0.5 for r in train)  # only the new run
    assert fresh.steps == 3


def _fake(calls):
    def run(cfg, backbone=None):
        calls.append((cfg.stage, cfg.tasks()[0].shots))
        t = cfg.tasks()[0]
        return StageResult(cfg.stage, cfg.resolved_run_dir(), {f"{t.name}/accuracy": 50.0, "score": 50.0},
                           [{"name": t.name}], steps=1, split="test")
    return run


class _NoBackbones:
    def get(self, cfg):
        return None


def test_sweep_skips_a_finished_cell_only_when_its_config_fingerprint_matches(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(sweep, "run_stage", _fake(calls))
    data = {"target": "digits", "output_dir": str(tmp_path),
            "sweep": {"shots": [1], "seeds": [1], "methods": [{"name": "CoOp", "stage": "single", "method": "coop"}]}}
    out = sweep.run_fewshot(load_run_config(None, [], data=data), _NoBackbones(), progress=False)
    assert calls == [("single", 1)]
    row = out["rows"][0]
    assert len(row["config_fingerprint"]) == 16 and "git_commit" in row
    assert "config fingerprint `" in out["table"] and "git commit `" in out["table"]
    sweep.run_fewshot(load_run_config(None, [], data=data), _NoBackbones(), progress=False)
    assert calls == [("single", 1)]  # same config: skipped
    sweep.run_fewshot(load_run_config(None, ["train.keep_last=7"], data=data), _NoBackbones(), progress=False)
    assert calls == [("single", 1)]  # an excluded key: still the same cell
    out = sweep.run_fewshot(load_run_config(None, ["train.optim.lr=0.5"], data=data), _NoBackbones(), progress=False)
    assert calls == [("single", 1)] * 2  # another lr: the cell runs again (its run dir decides: refuse / fresh)
    assert out["rows"][0]["config_fingerprint"] != row["config_fingerprint"]
