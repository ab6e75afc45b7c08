"""Fail fast for the T5 head: data, consumed runs, output and backbone are checked before anything loads."""

import json
from pathlib import Path

import pytest
from tmpt_helpers import task_dicts, write_synthetic

import huggingface_hub
import text_mpt.pipeline as pipeline
from mvlpt.core.errors import ConfigError, PreflightError
from text_mpt.config import load_run_config
from text_mpt.preflight import backbone_problems, first_row, preflight

TINY = {"name": "tiny", "tokenizer": "byt5", "max_input_length": 64, "max_target_length": 16}
TRAIN = {"max_steps": 2, "batch_size": 4, "progress": False, "tensorboard": False, "device": "cpu"}
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "text" / "tiny"


def _cfg(root, stage, tasks, **extra):
    data = {"stage": stage, "output_dir": str(root / stage), "tasks": tasks, "backbone": {**TINY, **extra.pop("backbone", {})},
            "prompt": {"length": 4, **extra.pop("prompt", {})}, "train": {**TRAIN, **extra.pop("train", {})}, **extra}
    return load_run_config(None, data=data)


@pytest.fixture
def no_backbone_load(monkeypatch):
    """The stage must fail before it loads a backbone (or touches the network)."""
    def refuse(*a, **k):
        raise AssertionError("the backbone was loaded before the preflight failed")

    monkeypatch.setattr(pipeline, "load_backbone", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


def test_missing_runs_bad_data_and_output_in_one_error(tmp_path, no_backbone_load):
    paths = write_synthetic(tmp_path / "data", n_train=4, n_dev=2)
    (paths["topic"] / "train.jsonl").write_text('{"text": "ball game"}\n')  # no label
    (tmp_path / "afile").write_text("x")
    tasks = task_dicts(paths, ["polarity", "topic"])
    tasks[0]["path"] = str(tmp_path / "nowhere")
    cfg = _cfg(tmp_path, "source", tasks, teacher_path=str(tmp_path / "teachers"),
               output_dir=str(tmp_path / "afile" / "source"))
    with pytest.raises(PreflightError) as err:
        pipeline.train_stage(cfg)
    msg = str(err.value)
    assert msg.startswith("4 problems found before any training step (nothing was run):\n  - ")
    assert "teacher_path" in msg and "teachers not found" in msg and "run `text-mpt teachers` first" in msg
    assert "afile is a file, not a directory" in msg
    assert "task 'polarity'" in msg and "nowhere" in msg
    assert "task 'topic' (train split" in msg and "row has no 'label'" in msg
    assert not (tmp_path / "teachers").exists()


def test_adapt_without_its_source_run_fails_before_loading(tmp_path, no_backbone_load):
    paths = write_synthetic(tmp_path / "data", n_train=4, n_dev=2)
    cfg = _cfg(tmp_path, "target", task_dicts(paths, ["review"]), prompt={"source_path": str(tmp_path / "src")},
               train={"distill": {"kl_weight": 0, "mse_weight": 0}})
    with pytest.raises(ConfigError, match=r"prompt\.source_path \S*src not found.*run `text-mpt source` first"):
        pipeline.train_stage(cfg)


def test_teachers_run_without_a_source_task(tmp_path, no_backbone_load):
    paths = write_synthetic(tmp_path / "data", n_train=4, n_dev=2)
    teach = tmp_path / "teachers"
    teach.mkdir()
    (teach / "prompts.safetensors").write_bytes(b"")
    (teach / "config.json").write_text(json.dumps({"meta": {"task_names": ["polarity"]}}))
    cfg = _cfg(tmp_path, "source", task_dicts(paths, ["polarity", "topic"]), teacher_path=str(teach))
    with pytest.raises(ConfigError, match=r"teacher_path \S*teachers has no prompt for task\(s\) \['topic'\]"):
        pipeline.train_stage(cfg)


def test_hub_backbones_are_looked_up_offline(tmp_path, monkeypatch, no_backbone_load):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    bb = load_run_config(None, data={"stage": "teachers", "output_dir": str(tmp_path), "tasks": [{"name": "rte"}]}).backbone
    (problem,) = backbone_problems(bb, {}, [])  # no name, no run to take it from: the default is not cached
    assert "names no backbone, so the default t5-base would be downloaded" in problem
    assert "`backbone.name: tiny-t5`" in problem
    named = load_run_config(None, data={"stage": "teachers", "output_dir": str(tmp_path), "tasks": [{"name": "rte"}],
                                        "backbone": {"name": "google/t5-v1_1-base"}}).backbone
    notes: list = []
    assert backbone_problems(named, {}, notes) == [] and "will be downloaded" in notes[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "downloads are off" in backbone_problems(named, {}, [])[0]
    missing = load_run_config(None, data={"stage": "teachers", "output_dir": str(tmp_path), "tasks": [{"name": "rte"}],
                                          "backbone": {"name": "./no_such_t5"}}).backbone
    assert "no such directory" in backbone_problems(missing, {}, [])[0]


def test_first_row_of_each_format(tmp_path):
    (tmp_path / "a.jsonl").write_text('\n{"x": 1}\n{"x": 2}\n')
    (tmp_path / "b.json").write_text('[{"x": 3}]')
    (tmp_path / "c.tsv").write_text("x\ty\n4\tz\n")
    assert [first_row(tmp_path / f)["x"] for f in ("a.jsonl", "b.json", "c.tsv")] == [1, 3, 4]


def test_the_tiny_demo_configs_pass(tmp_path):
    root = pipeline.resolve_data_root("")
    if root is None or not (Path(root) / "glue" / "SST-2").is_dir():
        pytest.skip(f"the demo configs read the shared GLUE data, absent here ({root}; set $MVLPT_DATA)")
    for name in ("teachers", "source", "adapt"):
        cfg = load_run_config(CONFIGS / f"{name}.yaml", [f"output_dir={tmp_path / name}"])
        if name == "source":  # its teachers run exists once the teachers stage ran: stand one in
            run = tmp_path / "teachers_run"
            run.mkdir()
            (run / "prompts.safetensors").write_bytes(b"")
            cfg = load_run_config(CONFIGS / f"{name}.yaml", [f"output_dir={tmp_path / name}", f"teacher_path={run}"])
        if name == "adapt":
            cfg = load_run_config(CONFIGS / f"{name}.yaml", [f"output_dir={tmp_path / name}",
                                                             f"prompt.source_path={tmp_path / 'teachers_run'}"])
        assert preflight(cfg, name, pipeline.resolve_data_root(cfg.data_root), log=None) == []
