"""Pipeline configs, stage merging, the sweep's bookkeeping (resume, table, plot) and the CLI
surface — with the stage runner replaced by a fake, so no model is trained here."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mvlpt.clip import cli
from mvlpt.clip.pipeline import report, sweep
from mvlpt.clip.pipeline.run_config import (CLIPRunConfig, TaskEntry, config_for_stage, load_run_config)
from mvlpt.clip.pipeline.stages import StageResult
from mvlpt.core.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "clip"


@pytest.mark.parametrize("name", ["quickstart", "mini_shared", "mvlpt_coop", "mvlpt_vpt", "mvlpt_upt", "mvlpt_all"])
def test_shipped_configs_load(name):
    cfg = load_run_config(CONFIGS / f"{name}.yaml")
    assert cfg.sources and cfg.target is not None
    for stage in ("teachers", "source", "target", "single", "zeroshot"):
        s = config_for_stage(cfg, stage)
        assert s.stage == stage and s.tasks()


def test_real_setting_matches_mvlpt_defaults():
    cfg = load_run_config(CONFIGS / "mvlpt_coop.yaml")
    assert (cfg.backbone.name, cfg.backbone.pretrained) == ("ViT-B-16", "openai")
    assert len(cfg.sources) == 11 and all(t.shots == 16 for t in cfg.sources)
    assert (cfg.train.optim.name, cfg.train.optim.lr, cfg.train.schedule.name, cfg.train.batch_size) == ("sgd", 0.002, "cosine", 32)
    assert cfg.prompt.text.length == 16 and cfg.prompt.visual.length == 16
    upt = load_run_config(CONFIGS / "mvlpt_upt.yaml")
    assert upt.method == "upt" and upt.prompt.text.length == 4 and upt.prompt.visual.length == 4


def test_stage_sections_and_cli_overrides(tmp_path):
    data = {"sources": ["digits", {"dataset": "easy_vqa", "max_eval": 5}], "target": "digits",
            "train": {"max_steps": 10}, "stages": {"teachers": {"train": {"max_steps": 3}}}}
    cfg = load_run_config(None, [], data=data)
    assert isinstance(cfg.sources[0], TaskEntry) and cfg.sources[1].max_eval == 5
    assert config_for_stage(cfg, "teachers").train.max_steps == 3
    assert config_for_stage(cfg, "source").train.max_steps == 10
    # command-line overrides win over the stage sections
    cfg = load_run_config(None, ["train.max_steps=7"], data=data)
    assert config_for_stage(cfg, "teachers").train.max_steps == 7
    assert config_for_stage(cfg, "target").resolved_run_dir() == Path("runs/clip/target_coop_digits")
    # a DatasetSpec mapping is accepted as a task
    cfg = load_run_config(None, [], data={"target": {"name": "mine", "source": "digits"}})
    assert cfg.target.name == "mine"


def test_method_sections_give_each_prompt_method_its_schedule():
    from mvlpt.clip.pipeline.plan import Cell, cell_config, cell_fingerprint

    data = {"sources": ["digits"], "target": "digits", "train": {"max_steps": 10, "optim": {"name": "sgd", "lr": 0.02}},
            "stages": {"teachers": {"train": {"max_steps": 3}}},
            "methods": {"coop": {"train": {"optim": {"name": "adamw", "lr": 0.01}},
                                 "stages": {"teachers": {"train": {"max_steps": 30}}},
                                 "sweep": {"epochs_by_shots": {"4": 300}}}},
            "sweep": {"shots": [4], "epochs_by_shots": {4: 15},
                      "methods": [{"name": "CoOp", "stage": "single", "method": "coop"},
                                  {"name": "VPT", "stage": "single", "method": "vpt"}]}}
    cfg = load_run_config(None, [], data=data)
    coop_t = config_for_stage(cfg, "teachers", {"prompt": {"method": "coop"}})
    vpt_t = config_for_stage(cfg, "teachers", {"prompt": {"method": "vpt"}})
    # the method section goes over the stage section, and its own stage section over both
    assert (coop_t.train.optim.name, coop_t.train.optim.lr, coop_t.train.max_steps) == ("adamw", 0.01, 30)
    assert (vpt_t.train.optim.name, vpt_t.train.optim.lr, vpt_t.train.max_steps) == ("sgd", 0.02, 3)
    assert config_for_stage(cfg, "source", {"prompt": {"method": "coop"}}).train.max_steps == 10
    # applied once: the resolved config carries no method sections, so resolving it again changes nothing
    assert coop_t.methods == {} and config_for_stage(coop_t, "teachers").train.max_steps == 30
    # the run's own settings and the command line still win
    assert config_for_stage(cfg, "single", {"prompt": {"method": "coop"}, "train": {"max_steps": 5}}).train.max_steps == 5
    cli_cfg = load_run_config(None, ["train.optim.lr=0.5"], data=data)
    assert config_for_stage(cli_cfg, "teachers", {"prompt": {"method": "coop"}}).train.optim.lr == 0.5
    # the prompt method may come from the command line
    assert config_for_stage(load_run_config(None, ["prompt.method=vpt"], data=data), "teachers").train.optim.name == "sgd"
    # few-shot cells: the method's epochs per K replace the sweep's
    coop, vpt = cfg.sweep.methods
    assert cell_config(cfg, Cell(coop, 4, 1), Path("out")).train_epochs == 300
    assert cell_config(cfg, Cell(vpt, 4, 1), Path("out")).train_epochs == 15
    # a section of another method does not touch this method's fingerprint
    other = load_run_config(None, [], data={**data, "methods": {**data["methods"], "vpt": {}}})
    assert cell_fingerprint(other, Cell(coop, 4, 1), Path("out")) == cell_fingerprint(cfg, Cell(coop, 4, 1), Path("out"))
    changed = load_run_config(None, [], data={**data, "methods": {"coop": {"train": {"optim": {"lr": 0.02}}}}})
    assert cell_fingerprint(changed, Cell(coop, 4, 1), Path("out")) != cell_fingerprint(cfg, Cell(coop, 4, 1), Path("out"))
    assert cell_fingerprint(changed, Cell(vpt, 4, 1), Path("out")) == cell_fingerprint(cfg, Cell(vpt, 4, 1), Path("out"))


@pytest.mark.parametrize("section, match", [
    ({"cop": {}}, "did you mean 'coop'"),
    ({"coop": {"prompt": {"method": "vpt"}}}, "prompt.method"),
    ({"coop": {"sources": ["digits"]}}, "'sources' cannot be set per method"),
    ({"coop": {"stages": {"teacher": {}}}}, "methods.coop.stages"),
    ({"coop": {"sweep": {"shots": [1]}}}, "only epochs_by_shots"),
    ({"coop": {"sweep": {"epochs_by_shots": {"x": 3}}}}, "shot counts"),
    ({"coop": {"train": {"max_step": 3}}}, "max_step"),
])
def test_method_section_errors_name_the_key(section, match):
    with pytest.raises(ConfigError, match=match):
        cfg = load_run_config(None, [], data={"sources": ["digits"], "target": "digits", "methods": section})
        config_for_stage(cfg, "teachers")


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="max_steps"):
        load_run_config(CONFIGS / "quickstart.yaml", ["train.max_step=3"])
    with pytest.raises(ConfigError, match="shots"):
        load_run_config(None, [], data={"sources": [{"dataset": "digits", "shot": 3}]})
    with pytest.raises(ConfigError, match="stages"):
        load_run_config(None, [], data={"stages": {"teacher": {}}})
    with pytest.raises(ConfigError, match="set 'sources'"):
        config_for_stage(load_run_config(None, [], data={"target": "digits"}), "teachers").tasks()
    with pytest.raises(ConfigError, match="duplicate"):
        load_run_config(None, [], data={"sweep": {"methods": [{"name": "a"}, {"name": "a"}]}})


def test_report_table_and_plot(tmp_path):
    rows = [{"method": "ZS", "shots": 0, "seed": 0, "accuracy": 50.0}]
    rows += [{"method": "CoOp", "shots": k, "seed": s, "accuracy": 50 + 2 * k + s} for k in (1, 4) for s in (1, 2)]
    summary = report.summarize(rows)
    coop1 = next(s for s in summary if s["method"] == "CoOp" and s["shots"] == 1)
    assert coop1["n"] == 2 and math.isclose(coop1["mean"], 53.5) and coop1["std"] > 0
    table = report.pivot(summary, [1, 4])
    assert table[0] == {"method": "ZS", "K=1": "50.0", "K=4": "50.0"}
    assert table[1]["K=1"] == "53.5 ± 0.7"
    paths = report.write_sweep_results(rows, tmp_path, [1, 4], title="t")
    assert "| CoOp |" in paths["table_md"].read_text()
    assert paths["plot"].stat().st_size > 1000 and paths["plot"].read_bytes()[:4] == b"\x89PNG"
    with paths["runs_csv"].open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert report.harmonic_mean(80, 40) == pytest.approx(53.333, abs=1e-3) and report.harmonic_mean(0, 1) == 0


def _fake_runner(calls):
    def run(cfg, backbone=None):
        calls.append(cfg)
        t = cfg.tasks()[0]
        acc = 30.0 if cfg.stage == "zeroshot" else 40.0 + t.shots + (10 if cfg.stage == "target" else 0)
        return StageResult(cfg.stage, cfg.resolved_run_dir(), {f"{t.name}/accuracy": acc, "score": acc},
                           [{"name": t.name}], steps=cfg.train.max_steps)
    return run


class _NoBackbones:
    def get(self, cfg):
        return None


def test_sweep_runs_every_cell_once_and_resumes(tmp_path, monkeypatch):
    calls: list[CLIPRunConfig] = []
    monkeypatch.setattr(sweep, "run_stage", _fake_runner(calls))
    data = {"target": "digits", "output_dir": str(tmp_path), "train": {"max_steps": 5},
            "sweep": {"shots": [1, 2], "seeds": [1, 2], "epochs_by_shots": {2: 3.0},
                      "methods": [{"name": "ZS", "stage": "zeroshot"}, {"name": "CoOp", "stage": "single"},
                                  {"name": "MVPT", "stage": "target", "method": "vpt",
                                   "overrides": {"train": {"max_steps": 9}}}]}}
    cfg = load_run_config(None, [], data=data)
    out = sweep.run_fewshot(cfg, _NoBackbones(), progress=False)
    assert len(calls) == 1 + 4 + 4
    mvpt = [c for c in calls if c.stage == "target"]
    assert all(c.method == "vpt" and c.train.max_steps == 9 for c in mvpt)
    assert {(c.target.shots, c.target.seed, c.train.seed) for c in mvpt} == {(1, 1, 1), (1, 2, 2), (2, 1, 1), (2, 2, 2)}
    assert [c.train_epochs for c in calls if c.stage == "single" and c.target.shots == 2] == [3.0, 3.0]
    assert "| MVPT | 51.0 ± 0.0 | 52.0 ± 0.0 |" in out["table"]
    assert out["paths"]["plot"].is_file() and out["paths"]["table_csv"].is_file()
    # resume: a second call runs nothing; removing one row re-runs exactly that cell
    calls.clear()
    sweep.run_fewshot(cfg, _NoBackbones(), progress=False)
    assert calls == []
    runs = tmp_path / "fewshot_digits" / report.RUNS_FILE
    lines = runs.read_text().splitlines()
    runs.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # last line torn by an interruption
    sweep.run_fewshot(cfg, _NoBackbones(), progress=False)
    assert [(c.stage, c.target.shots, c.target.seed) for c in calls] == [("target", 2, 2)]


def test_sweep_base_to_new_reports_harmonic_mean(tmp_path, monkeypatch):
    calls: list[CLIPRunConfig] = []
    monkeypatch.setattr(sweep, "run_stage", _fake_runner(calls))
    monkeypatch.setattr(sweep, "evaluate_trained", lambda run_dir, cfg, bb: {f"{cfg.target.name}/accuracy": 20.0})
    data = {"target": "digits", "output_dir": str(tmp_path),
            "sweep": {"shots": [4], "seeds": [1], "base_to_new": True,
                      "methods": [{"name": "ZS", "stage": "zeroshot"}, {"name": "CoOp", "stage": "single"}]}}
    out = sweep.run_fewshot(load_run_config(None, [], data=data), _NoBackbones(), progress=False)
    coop = next(r for r in out["rows"] if r["method"] == "CoOp")
    assert (coop["base"], coop["new"]) == (44.0, 20.0)
    assert coop["hm"] == pytest.approx(report.harmonic_mean(44.0, 20.0))
    assert {c.target.classes for c in calls} == {"base", "new"}  # zero-shot is evaluated on both halves
    assert (tmp_path / "fewshot_digits" / "base" / "results.md").is_file()


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("teachers", "source", "adapt", "zeroshot", "fewshot", "predict", "quickstart", "pretrain"):
        assert cmd in out
    assert cli.main(["teachers", "--config", str(CONFIGS / "quickstart.yaml"), "train.max_step=1"]) == 2  # bad input
    assert "did you mean 'max_steps'" in capsys.readouterr().err


def test_readme_method_section_example_loads():
    import re

    import yaml

    text = (CONFIGS.parents[1] / "README.md").read_text()
    block = re.search(r"\*\*A schedule per prompt method\.\*\*.*?```yaml\n(.*?)```", text, re.S).group(1)
    cfg = load_run_config(None, [], data={"sources": ["digits"], "target": "digits", **yaml.safe_load(block)})
    coop = config_for_stage(cfg, "teachers", {"prompt": {"method": "coop"}})
    assert (coop.train.optim.name, coop.train.max_steps) == ("adamw", 300)
