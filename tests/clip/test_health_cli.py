"""A collapsed CLIP teacher: the run warns and records it; --strict makes it an error, also when a later
stage consumes that teacher run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clip_helpers import tiny_run

from mvlpt.clip import cli
from mvlpt.core.health import HealthWarning


def _config(root: Path, lr: float) -> Path:
    cfg = tiny_run(root, prompt={"method": "coop", "text": {"length": 4}},
                   train={"batch_size": 16, "eval_batch_size": 64, "max_steps": 15, "optim": {"name": "sgd", "lr": lr},
                          "clip_grad_norm": 0.0},
                   output_dir=str(root / "runs"),
                   sources=[{"dataset": "digits", "max_train": 64, "max_eval": 40, "hflip": False}])
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_collapsed_teacher_warns_and_strict_fails(tmp_path, capsys):
    path = _config(tmp_path, lr=500.0)  # a rate that blows the context up: every class text looks the same
    with pytest.warns(HealthWarning):
        assert cli.main(["teachers", "--config", str(path)]) == 0
    health = json.loads((tmp_path / "runs" / "teachers_coop" / "health.json").read_text())
    assert health["ok"] is False and any("collapsed" in p or "chance" in p for p in health["problems"])
    # teachers are also compared with zero-shot CLIP on their own task
    zs = health["checked"]["zeroshot/digits/accuracy"]
    teacher = json.loads((tmp_path / "runs" / "teachers_coop" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= zs <= 100
    if teacher.get("digits/accuracy", 100) <= zs:
        assert any("does not beat zero-shot" in p for p in health["problems"])
    assert "WARNING" in (tmp_path / "runs" / "teachers_coop" / "results.md").read_text()
    capsys.readouterr()
    # the source stage consumes the teacher run: --strict refuses it before training
    assert cli.main(["source", "--config", str(path), "--strict"]) == 1
    assert "health check of the teacher run" in capsys.readouterr().err
    assert cli.main(["teachers", "--config", str(path), "--strict", "output_dir=" + str(tmp_path / "strict")]) == 1
