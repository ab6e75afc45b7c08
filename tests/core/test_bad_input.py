"""The core's part of the bad-input matrix: configs, overrides and checkpoints."""

import pickle

import pytest
import torch

from mvlpt.core import ConfigError, DecomposedPrompt, TrainConfig, load_config
from mvlpt.core import checkpoint as ckpt
from mvlpt.core.errors import CheckpointError, ShapeMismatchError
from mvlpt.core.stages import PromptConfig, resolve_prompt_config

from toy import ToyTaskModel


def test_unknown_key_suggests_nearest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("max_step: 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'max_step'; did you mean 'max_steps'\?"):
        load_config(TrainConfig, p)
    p.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"'optim.lrr'; did you mean 'lr'"):
        load_config(TrainConfig, p)


@pytest.mark.parametrize("yaml_text, match", [
    ("max_steps: ten\n", r"max_steps: expected an int, found 'ten'"),
    ("optim:\n  name: adam\n", r"optim.name: expected one of 'adamw', 'sgd', found 'adam'"),
    ("progress: 3\n", r"progress: expected a bool"),
    ("batch_size: 0\n", r"train.batch_size must be >= 1, found 0"),
    ("max_steps: 5\nschedule:\n  warmup_steps: 10\n", r"warmup_steps \(10\) exceeds train.max_steps \(5\)"),
])
def test_wrong_types_and_contradictions(tmp_path, yaml_text, match):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        load_config(TrainConfig, p)


def test_missing_required_and_contradictory_prompt_options():
    from dataclasses import dataclass

    from mvlpt.core import from_dict

    @dataclass
    class Needs:
        name: str
        n: int = 1

    with pytest.raises(ConfigError, match="missing required config key 'name'"):
        from_dict(Needs, {"n": 2})
    with pytest.raises(ConfigError, match="set prompt.source_path"):
        resolve_prompt_config(PromptConfig(), "target")
    # vanilla from a vanilla (MVLPT) source is allowed; the source's kind is checked when it is loaded
    assert resolve_prompt_config(PromptConfig(kind="vanilla", init="source", source_path="x"), "target").train == [
        "task_prompts"]


def test_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("max_steps: 10\n")
    cfg = load_config(TrainConfig, p, ["optim.lr=1e-3", "batch_size=4", "sampling.strategy=uniform"])
    assert cfg.optim.lr == 1e-3 and cfg.batch_size == 4 and cfg.sampling.strategy == "uniform"
    with pytest.raises(ConfigError, match=r"unknown key 'lrate' under 'optim'; did you mean 'lr'"):
        load_config(TrainConfig, p, ["optim.lrate=1"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(TrainConfig, p, ["max_steps"])
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "nope.yaml")


def test_pickled_file_is_refused_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "prompts.safetensors"
    bad.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(CheckpointError, match="pickle.*never loaded"):
        ckpt.load_tensors(bad)
    torch.save({"x": torch.zeros(2)}, tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt.load_tensors(tmp_path / "t.safetensors")
    assert not marker.exists()


def test_truncated_file(tmp_path):
    f = tmp_path / "p.safetensors"
    ckpt.save_tensors(f, {"a": torch.randn(100, 100)})
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load_tensors(f)
    f.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load_tensors(f)


def test_checkpoint_of_another_prompt_shape(tmp_path):
    model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    other = ToyTaskModel(DecomposedPrompt(2, (6, 8)))
    with pytest.raises(ShapeMismatchError, match=r"'shared' has shape \(6, 8\) in the checkpoint but the model expects \(4, 8\)"):
        model.load_trainable_state_dict(other.trainable_state_dict())
    with pytest.raises(CheckpointError, match="missing"):
        model.load_trainable_state_dict({})
    with pytest.raises(FileNotFoundError, match="no prompts found"):
        ckpt.load_run_prompts(tmp_path / "missing_run")


def test_tied_weights_are_saved_and_loaded(tmp_path):
    w = torch.randn(4, 3)
    ckpt.save_tensors(tmp_path / "t.safetensors", {"enc.weight": w, "dec.weight": w})
    back = ckpt.load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(back["enc.weight"], w) and torch.equal(back["dec.weight"], w)


def test_one_dimensional_parameters_are_not_decayed_by_default():
    from mvlpt.core import OptimConfig
    from mvlpt.core.optim import build_optimizer

    lin = torch.nn.Linear(3, 2)
    opt = build_optimizer(lin.parameters(), OptimConfig(weight_decay=0.1))
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 0.1), (1, 0.0)]
    opt = build_optimizer(lin.parameters(), OptimConfig(weight_decay=0.1, decay_1d=True))
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(2, 0.1)]
