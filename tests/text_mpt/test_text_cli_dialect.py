"""One dialect across heads: ``text-mpt <stage> --config X.yaml key=value`` (the positional form is an alias),
``run_dir`` (old name ``output_dir``) and ``data.root`` (= ``data_root``), the run directory's layout, and
``text-mpt pretrain --config``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tmpt_helpers import task_dicts, write_synthetic

from mvlpt.core.errors import ConfigError
from text_mpt.cli import main
from text_mpt.config import load_run_config

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN = ROOT / "configs" / "pretrain" / "tiny_t5.yaml"
TINY = {"name": "tiny", "tokenizer": "byt5", "max_input_length": 64, "max_target_length": 16}
TRAIN = {"max_steps": 4, "batch_size": 8, "eval_batch_size": 16, "log_every": 2, "eval_every": 2, "save_every": 2,
         "progress": False, "tensorboard": False, "device": "cpu", "clip_grad_norm": 0.0,
         "optim": {"lr": 0.3, "weight_decay": 0.0}, "schedule": {"name": "constant"},
         "distill": {"kl_weight": 0, "mse_weight": 0}}
#: what a run directory of either head holds
RUN_LAYOUT = ("config.json", "checkpoints", "metrics.jsonl", "results.md", "results.csv")


@pytest.fixture(scope="module")
def stage_yaml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dialect")
    paths = write_synthetic(root / "data", n_train=24, n_dev=8)
    cfg = {"stage": "teachers", "run_dir": str(root / "unused"), "tasks": task_dicts(paths, ["polarity"]),
           "backbone": TINY, "prompt": {"length": 4}, "train": TRAIN}
    path = root / "teachers.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def both_forms(stage_yaml):
    """The same tiny teachers stage run with ``--config`` + ``run_dir=`` and with the positional alias +
    ``output_dir=`` (the old spelling)."""
    new, old = stage_yaml.parent / "new", stage_yaml.parent / "old"
    assert main(["teachers", "--config", str(stage_yaml), f"run_dir={new}"]) == 0
    assert main(["teachers", str(stage_yaml), f"output_dir={old}"]) == 0
    return new, old


def test_both_forms_run_the_same_stage_into_the_same_layout(both_forms):
    new, old = both_forms
    for run in (new, old):
        assert all((run / name).exists() for name in RUN_LAYOUT), sorted(p.name for p in run.iterdir())
        saved = json.loads((run / "config.json").read_text())
        assert saved["run_dir"] == saved["output_dir"] == str(run)  # one directory, both names saved
    assert (new / "results.csv").read_text() == (old / "results.csv").read_text()  # the same run, bitwise on CPU
    # the run directory is not part of the config's identity: both have the same fingerprint
    assert (new / "results.md").read_text().split("config fingerprint")[1].split("`")[1] == \
        (old / "results.md").read_text().split("config fingerprint")[1].split("`")[1]


def test_eval_and_predict_take_the_same_dialect(both_forms, stage_yaml, capsys):
    new, _ = both_forms
    assert main(["eval", "--config", str(stage_yaml), f"run_dir={new}"]) == 0
    assert (new / "eval" / "results.md").is_file()
    capsys.readouterr()
    assert main(["predict", "--run", str(new), "--row", '{"task": "polarity", "text": "good film"}', "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["task"] == "polarity"


def test_cli_refuses_a_config_given_twice_or_not_at_all(stage_yaml, capsys):
    assert main(["teachers", "--config", str(stage_yaml), str(stage_yaml)]) == 2
    assert "the config is already given with --config" in capsys.readouterr().err
    assert main(["teachers", "train.max_steps=3"]) == 2
    assert "give a config: text-mpt teachers --config CONFIG.yaml" in capsys.readouterr().err
    assert main(["source", "--config", str(stage_yaml)]) == 2  # a teachers config: the same message as before
    assert "run it with `text-mpt teachers`" in capsys.readouterr().err


def test_alias_keys_validate(tmp_path):
    base = {"stage": "teachers", "tasks": [{"name": "rte"}]}
    assert load_run_config(None, data={**base, "output_dir": "a"}).run_dir == "a"
    cfg = load_run_config(None, data={**base, "run_dir": "a", "data": {"root": "d"}})
    assert (cfg.run_dir, cfg.output_dir, cfg.data_root) == ("a", "a", "d")
    with pytest.raises(ConfigError, match="missing required config key 'run_dir'"):
        load_run_config(None, data=base)
    with pytest.raises(ConfigError, match="output_dir is another spelling of run_dir"):
        load_run_config(None, data={**base, "run_dir": "a", "output_dir": "b"})
    with pytest.raises(ConfigError, match="data.root is another spelling of data_root"):
        load_run_config(None, data={**base, "run_dir": "a", "data": {"root": "x"}, "data_root": "y"})
    with pytest.raises(ConfigError, match=r"\['data.train_augment'\].*holds only 'root'"):
        load_run_config(None, data={**base, "run_dir": "a", "data": {"root": "x", "train_augment": False}})
    # overrides of either spelling win over the file's; a child file wins over its base
    parent = tmp_path / "base.yaml"
    parent.write_text(json.dumps({**base, "run_dir": "from_base", "data": {"root": "base_root"}}))
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\noutput_dir: from_child\ndata_root: child_root\n")
    cfg = load_run_config(child)
    assert (cfg.run_dir, cfg.data_root) == ("from_child", "child_root")
    cfg = load_run_config(child, ["run_dir=o1", "data.root=o2"])
    assert (cfg.run_dir, cfg.output_dir, cfg.data_root) == ("o1", "o1", "o2")
    assert load_run_config(child, ["output_dir=o3"]).run_dir == "o3"
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: teachers\ntasks: [{name: rte}]\nrun_dir: a\noutput_dir: b\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: output_dir='b' and run_dir='a'"):
        load_run_config(bad)


def test_shipped_text_configs_use_run_dir():
    for path in sorted((ROOT / "configs" / "text").rglob("*.yaml")):
        if path.name != "base.yaml":
            cfg = load_run_config(path)
            assert cfg.run_dir and cfg.run_dir == cfg.output_dir and "output_dir:" not in path.read_text(), path


def test_pretrain_takes_config(tmp_path, capsys):
    # dispatched to the pretraining wing with its recipe loaded and validated; nothing is trained here
    assert main(["pretrain", "--config", str(PRETRAIN), "data.extra_ids=2"]) == 2
    assert "sentinels" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(PRETRAIN), f"run_dir={tmp_path / 'none'}", "--export-only"]) == 2
    assert "nothing to export in" in capsys.readouterr().err
    out = subprocess.run([sys.executable, "-m", "text_mpt.pretrain", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "--config" in out.stdout and "text-mpt pretrain" in out.stdout


def test_model_layers_do_not_import_the_pretraining_wing():
    code = ("import sys, text_mpt.pipeline, text_mpt.inference, text_mpt.peft_io, text_mpt.cli; "
            "print([m for m in sys.modules if m.startswith('text_mpt.pretrain')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
