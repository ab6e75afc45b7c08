"""The one-call Python entries (``mvlpt.clip.create_prompted_model``, ``text_mpt.create_prompted_model``):
from a config the model is the one the stage runner trains (same trainable tensors at its start); from a
saved run it predicts and evaluates as ``Predictor.from_run`` / ``evaluate_trained`` / ``text-mpt eval`` do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvlpt.core.checkpoint import load_tensors
from mvlpt.core.errors import ConfigError


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k].cpu(), b[k].cpu()), k


# ------------------------------------------------------------------------------------------------ CLIP

def _clip_cfg(root: Path) -> dict:
    from mvlpt.clip import tiny_clip_config

    bb = root / "tiny.json"
    bb.write_text(json.dumps(tiny_clip_config(image_size=16, patch_size=8, width=32, text_width=32, embed_dim=32,
                                              context_length=24)))
    return {"backbone": {"name": "tiny-random", "pretrained": None, "model_config": str(bb)},
            "prompt": {"method": "coop", "text": {"length": 4}},
            "train": {"device": "cpu", "precision": "fp32", "progress": False, "tensorboard": False, "max_steps": 4,
                      "batch_size": 8, "eval_batch_size": 64, "optim": {"name": "sgd", "lr": 0.02, "momentum": 0.9},
                      "health": {"enabled": False}},  # a random 16 px CLIP learns nothing in 4 steps
            "data": {"train_augment": False}, "threads": 1, "output_dir": str(root / "runs"),
            "target": {"dataset": "digits", "shots": 2, "max_eval": 24, "hflip": False}}


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """A single-task CoOp run trained by the stage runner (the `mvlpt adapt --scratch` path)."""
    from mvlpt.clip.pipeline import config_for_stage, load_run_config, run_stage

    root = tmp_path_factory.mktemp("clip_entry")
    data = _clip_cfg(root)
    threads = torch.get_num_threads()
    res = run_stage(config_for_stage(load_run_config(None, data=data), "single"))
    torch.set_num_threads(threads)
    return root, data, res


def test_clip_from_config_is_the_model_the_stage_trains(clip_run):
    from mvlpt.clip import CLIPTaskModel, create_prompted_model

    root, data, res = clip_run
    pm = create_prompted_model(data, stage="single")
    assert isinstance(pm.model, CLIPTaskModel) and pm.run_dir == res.run_dir
    start = load_tensors(res.run_dir / "checkpoints" / "start_prompts.safetensors")
    _same_tensors(pm.model.trainable_state_dict(), start)  # names, shapes and the seeded initial values
    trainable = sum(p.numel() for p in pm.model.parameters() if p.requires_grad)
    assert trainable == sum(t.numel() for t in start.values())  # the frozen backbone trains nothing
    assert pm.task_names == ["digits"] and pm.tasks[0].train is not None
    # the same config as a YAML path with overrides, and as a CLIPRunConfig
    import yaml
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump({**data, "target": {"dataset": "digits", "max_eval": 24, "hflip": False}}))
    pm2 = create_prompted_model(path, stage="single", overrides=["target.shots=2"])
    _same_tensors(pm2.model.trainable_state_dict(), start)


def test_clip_trainer_is_the_stage_loop(clip_run, tmp_path):
    from mvlpt.clip import create_prompted_model
    from mvlpt.core.logging_utils import read_metrics

    root, data, res = clip_run
    pm = create_prompted_model(data, stage="single")
    out = pm.trainer(run_dir=tmp_path / "mine").fit()
    assert out["step"] == 4 and pm.run_dir == tmp_path / "mine"
    assert (tmp_path / "mine" / "splits").is_dir()  # the few-shot manifest, as the stage runner writes it
    ours = [r["loss"] for r in read_metrics(tmp_path / "mine") if r["split"] == "train"]
    theirs = [r["loss"] for r in read_metrics(res.run_dir) if r["split"] == "train"]
    assert ours == theirs  # the same batches, the same steps
    saved = json.loads((tmp_path / "mine" / "config.json").read_text())
    assert saved["resolved_tasks"][0]["name"] == "digits"


def test_clip_from_run_predicts_as_the_predictor(clip_run, tmp_path):
    from mvlpt.clip import create_prompted_model
    from mvlpt.clip.pipeline import Predictor, evaluate_trained, load_run_config

    root, data, res = clip_run
    pm = create_prompted_model(run=res.run_dir)
    images = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    want = Predictor.from_run(res.run_dir, device="cpu").predict(images, topk=3)
    assert pm.predict(images, device="cpu", topk=3) == want
    assert pm.evaluate() == evaluate_trained(res.run_dir, load_run_config(None, data={**data, "stage": "single"}))
    with pytest.raises(ConfigError, match="saved run"):
        pm.trainer()
    # save_pretrained → a run directory every loader reads, with the same predictions
    out = pm.save_pretrained(tmp_path / "saved")
    assert create_prompted_model(run=out).predict(images, device="cpu", topk=3) == want
    assert Predictor.from_run(out, device="cpu").predict(images, topk=3) == want


def test_clip_entry_refuses_unclear_calls(clip_run):
    from mvlpt.clip import create_prompted_model

    root, data, res = clip_run
    with pytest.raises(ConfigError, match="not both"):
        create_prompted_model(data, run=res.run_dir)
    with pytest.raises(ConfigError, match="not both"):
        create_prompted_model()
    with pytest.raises(ConfigError, match="no prompts to train"):
        create_prompted_model(data, stage="zeroshot")
    with pytest.raises(ConfigError, match="overrides"):
        create_prompted_model(run=res.run_dir, overrides=["train.max_steps=1"])


# ------------------------------------------------------------------------------------------------ text

TEXT_TRAIN = {"max_steps": 6, "batch_size": 8, "eval_batch_size": 16, "eval_every": 3, "log_every": 1,
              "progress": False, "tensorboard": False, "device": "cpu", "optim": {"lr": 0.3, "weight_decay": 0.0},
              "schedule": {"name": "constant"}, "distill": {"kl_weight": 0, "mse_weight": 0},
              "health": {"enabled": False}}


def _text_cfg(root: Path, run_dir: Path) -> dict:
    data = root / "polarity"
    data.mkdir(parents=True, exist_ok=True)
    pairs = [("good", "positive"), ("awful", "negative"), ("great", "positive"), ("bad", "negative")]
    for split, n in (("train", 8), ("dev", 4)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"text": f"the {w} film {i}", "label": lab}) + "\n"
                                                     for i in range(n) for w, lab in pairs))
    return {"stage": "source", "run_dir": str(run_dir),
            "backbone": {"name": "tiny", "tokenizer": "byt5", "max_input_length": 64, "max_target_length": 16},
            "tasks": [{"name": "polarity", "path": str(data), "template": "polarity: {text}",
                       "labels": ["negative", "positive"]}],
            "prompt": {"length": 4}, "train": TEXT_TRAIN}


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A source-stage run (decomposed prompts, no distillation) trained by ``text_mpt.pipeline.train_stage``."""
    from text_mpt.config import load_run_config
    from text_mpt.pipeline import train_stage

    root = tmp_path_factory.mktemp("text_entry")
    data = _text_cfg(root, root / "source")
    res = train_stage(load_run_config(None, data=data))
    return root, data, res


ROWS = [{"task": "polarity", "text": "the good film"}, {"task": "polarity", "text": "an awful film"},
        {"task": "polarity", "text": "bad"}]


def test_text_from_config_is_the_model_the_stage_trains(text_run, tmp_path):
    from text_mpt import PromptedT5, create_prompted_model
    from mvlpt.core.logging_utils import read_metrics

    root, data, res = text_run
    pm = create_prompted_model(data)
    assert isinstance(pm.model, PromptedT5) and pm.task_names == ["polarity"]
    start = load_tensors(Path(res["run_dir"]) / "checkpoints" / "start_prompts.safetensors")
    _same_tensors(pm.model.trainable_state_dict(), start)
    out = pm.trainer(run_dir=tmp_path / "mine").fit()
    assert out["step"] == 6 and pm.config.run_dir == str(tmp_path / "mine")
    ours = [r["loss"] for r in read_metrics(tmp_path / "mine") if r["split"] == "train"]
    assert ours == [r["loss"] for r in read_metrics(res["run_dir"]) if r["split"] == "train"]
    assert json.loads((tmp_path / "mine" / "config.json").read_text())["meta"]["task_names"] == ["polarity"]


def test_text_from_run_predicts_and_evaluates_as_the_pipeline(text_run):
    from text_mpt import Predictor, create_prompted_model
    from text_mpt.config import load_run_config
    from text_mpt.pipeline import evaluate_run

    root, data, res = text_run
    pm = create_prompted_model(run=res["run_dir"])
    assert pm.predict(ROWS, device="cpu") == Predictor.from_run(res["run_dir"], device="cpu").predict(ROWS)
    assert pm.evaluate() == evaluate_run(load_run_config(None, data=data))["metrics"]
    with pytest.raises(ConfigError, match="saved run"):
        pm.trainer()


def test_text_save_and_export_peft(text_run, tmp_path):
    from text_mpt import create_prompted_model, export_peft

    root, data, res = text_run
    pm = create_prompted_model(run=res["run_dir"])
    a = pm.export_peft(tmp_path / "a")
    b = export_peft(res["run_dir"], tmp_path / "b")  # = `text-mpt export-peft`
    for name in ("adapter_model.safetensors", "adapter_config.json", "mvlpt_run.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    saved = pm.save_pretrained(tmp_path / "saved")
    again = create_prompted_model(run=saved)
    assert again.predict(ROWS, device="cpu") == pm.predict(ROWS, device="cpu")
    # a model built from a config exports its in-memory prompts (here: the untrained start)
    fresh = create_prompted_model(data)
    c = fresh.export_peft(tmp_path / "c")
    assert json.loads((c / "adapter_config.json").read_text())["num_virtual_tokens"] == 4
    with pytest.raises(ConfigError, match="not both"):
        create_prompted_model(data, run=res["run_dir"])
    with pytest.raises(ConfigError, match="apply to run"):
        create_prompted_model(data, mode="rank")
