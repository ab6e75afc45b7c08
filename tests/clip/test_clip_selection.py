"""Model selection on a validation split (never test), reporting the best checkpoint on test,
and Dassl/CoOp's epochs → steps for small few-shot sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from datasets_vl import collate_vl
from clip_helpers import tiny_run
from mvlpt.clip.pipeline import config_for_stage, load_run_config, run_stage
from mvlpt.clip.pipeline import report, sweep
from mvlpt.clip.pipeline.data import Preprocess, image_names, load_run_tasks
from mvlpt.clip.pipeline.stages import StageResult, _steps, load_trained
from mvlpt.core.checkpoint import load_tensors
from mvlpt.core.errors import ConfigError, DataError
from mvlpt.core.trainer import Trainer

PRE = Preprocess(size=16)


def _cfg(stage="single", **data):
    base = {"target": {"dataset": "digits", "hflip": False}, "data": {"train_augment": False}}
    for k, v in data.items():
        base[k] = v if not isinstance(v, dict) or k not in base else {**base[k], **v}
    return config_for_stage(load_run_config(None, [], data=base), stage)


def _full_train_names(cfg):
    target = dict(cfg.target.__dict__, shots=0, max_train=0)
    off = config_for_stage(load_run_config(None, [], data={"target": target}), "single")
    return image_names(load_run_tasks(off, PRE)[0].train)


# ------------------------------------------------------------------ validation sets

def test_holdout_val_is_removed_from_train_deterministic_and_never_test():
    cfg = _cfg(train={"eval_every": 5})
    t = load_run_tasks(cfg, PRE)[0]
    assert t.val_source == "holdout"  # digits has no val split
    full = _full_train_names(cfg)
    val, train, test = image_names(t.val), image_names(t.train), image_names(t.eval)
    assert len(val) == round(0.1 * len(full)) and len(val) + len(train) == len(full)
    assert val <= full and not val & train and not val & test and not train & test
    again = image_names(load_run_tasks(cfg, PRE)[0].val)
    other = image_names(load_run_tasks(_cfg(train={"eval_every": 5}, target={"seed": 2}), PRE)[0].val)
    assert again == val and other != val
    # max_eval caps the hold-out (no training data wasted on unused validation rows) and the test set
    capped = load_run_tasks(_cfg(train={"eval_every": 5}, target={"max_eval": 30}), PRE)[0]
    assert len(capped.val) == 30 and len(capped.eval) == 30 and len(capped.train) == len(full) - 30
    assert len(load_run_tasks(_cfg(data={"val_source": "holdout", "val_max": 7}), PRE)[0].val) == 7
    # no selection (eval_every 0, val_source auto): nothing held out
    plain = load_run_tasks(_cfg(), PRE)[0]
    assert plain.val is None and image_names(plain.train) == full


def test_fewshot_holdout_uses_unsampled_train_rows(tmp_path):
    cfg = _cfg(train={"eval_every": 2}, target={"shots": 2, "seed": 3}, run_dir=str(tmp_path / "run"))
    t = load_run_tasks(cfg, PRE, tmp_path / "run")[0]
    full = _full_train_names(cfg)
    val, shots, test = image_names(t.val), image_names(t.train), image_names(t.eval)
    assert len(shots) == 20 and len(val) == 20  # CoOp: min(K, 4) validation examples per class
    assert val <= full and not val & shots and not val & test
    manifest = json.loads(next((tmp_path / "run" / "splits").glob("*.json")).read_text())
    assert len(manifest["val"]) == 20
    assert image_names(load_run_tasks(cfg, PRE, tmp_path / "run")[0].val) == val


def test_val_k_sets_the_few_shot_validation_rows_per_class_and_leaves_the_shots(tmp_path):
    """data.val_k: a larger few-shot validation set (to compare runs on the target's val split) from
    the same unsampled pool; the K shots are those of the default run, and a manifest written with
    another val_k is refused rather than silently reused."""
    def load(run, **data):
        cfg = _cfg(train={"eval_every": 2}, target={"shots": 2, "seed": 3}, run_dir=str(tmp_path / run),
                   data={"train_augment": False, **data})
        return load_run_tasks(cfg, PRE, tmp_path / run)[0]

    default, wide = load("coop"), load("wide", val_k=12)
    assert image_names(wide.train) == image_names(default.train)  # the shots do not move
    assert len(default.val) == 20 and len(wide.val) == 120  # min(K, 4) vs 12 per class, 10 classes
    assert image_names(default.val) < image_names(wide.val)  # the same pool order, further along
    assert not image_names(wide.val) & image_names(wide.train) and not image_names(wide.val) & image_names(wide.eval)
    # reported as the val split without selection: eval_split=val, val_source auto, eval_every 0
    plain = load_run_tasks(_cfg(target={"shots": 2, "seed": 3}, eval_split="val", run_dir=str(tmp_path / "v"),
                                data={"train_augment": False, "val_k": 12}), PRE, tmp_path / "v")[0]
    assert plain.val is None and image_names(plain.eval) == image_names(wide.val)
    with pytest.raises(DataError, match="validation rows per class"):
        load("coop", val_k=12)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="data.val_k"):
            _cfg(data={"val_k": bad})


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("val", 3), ("test", 2)):
        for c in ("cat", "dog"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{split}_{c}_{i}.png")
    return root


def test_own_val_split_is_used_and_disjoint_from_test(tmp_path):
    root = _image_folder(tmp_path / "pets")
    ds = {"name": "tiny_pets", "source": "imagefolder", "root": str(root)}
    t = load_run_tasks(_cfg(target={"dataset": ds}, train={"eval_every": 1}), PRE)[0]
    assert t.val_source == "split" and len(t.val) == 6 and len(t.train) == 10
    val, test = image_names(t.val), image_names(t.eval)
    assert all("/val/" in n for n in val) and all("/test/" in n for n in test) and not val & test
    few = load_run_tasks(_cfg(target={"dataset": ds, "shots": 1}, data={"val_source": "split"}), PRE)[0]
    assert len(few.train) == 2 and len(few.val) == 2 and all("/val/" in n for n in image_names(few.val))
    held = load_run_tasks(_cfg(target={"dataset": ds}, data={"val_source": "holdout", "val_fraction": 0.2}), PRE)[0]
    assert held.val_source == "holdout" and len(held.val) == 2 and len(held.train) == 8
    assert all("/train/" in n for n in image_names(held.val))
    with pytest.raises(DataError, match="val_source"):
        load_run_tasks(_cfg(data={"val_source": "split"}), PRE)  # digits has no val split


def test_reporting_on_the_selection_split_is_refused(tmp_path):
    cfg = config_for_stage(load_run_config(None, [], data=tiny_run(tmp_path, eval_split="val", train={"eval_every": 1},
                                                                   target={"dataset": "digits"})), "single")
    with pytest.raises(ConfigError, match="eval_split=val would report the numbers on the split the checkpoint"):
        load_run_tasks(cfg, Preprocess(size=16))


def test_selection_keys_are_validated():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        _cfg(data={"val_fraction": 1.0})
    with pytest.raises(ConfigError, match="data.val_max"):
        _cfg(data={"val_max": -1})
    with pytest.raises(ConfigError, match="val_source"):
        _cfg(data={"val_source": "test"})


# ------------------------------------------------------------------ training: select on val, report test

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    base = tiny_run(
        root,
        prompt={"method": "coop", "text": {"length": 4}},
        train={"batch_size": 16, "eval_batch_size": 64, "max_steps": 8, "log_every": 1, "clip_grad_norm": 0.0,
               "save_every": 1, "keep_last": 100, "seed": 0,
               "optim": {"name": "adamw", "lr": 0.2, "weight_decay": 0.0}, "schedule": {"name": "constant"}},
        data={"val_max": 60},  # val: 60 held-out train rows
        target={"dataset": "digits", "max_train": 200, "hflip": False},  # test: all 360
    )
    out = {}
    for name, extra in (("sel", {"train": {"eval_every": 1}}), ("last", {})):
        data = json.loads(json.dumps(base))
        data["train"].update(extra.get("train", {}))
        data["run_dir"] = str(root / name)
        cfg = config_for_stage(load_run_config(None, [], data=data), "single")
        out[name] = (cfg, run_stage(cfg))
    return out


def _evaluate(cfg, run_dir: Path, prompts: Path | None = None) -> dict[str, float]:
    found, model, bb = load_trained(run_dir)
    if prompts is not None:
        model.load_trainable_state_dict(load_tensors(prompts))
    tasks = load_run_tasks(cfg, bb.preprocess, None, need_train=False)
    trainer = Trainer(model, [], collate_vl, found.train, run_dir / "eval_check", run_config={})
    return trainer.evaluate([t.eval for t in tasks])


def test_reported_test_metrics_are_the_best_val_checkpoint(runs):
    cfg, res = runs["sel"]
    rows = [json.loads(l) for l in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    val_scores = {r["step"]: r["score"] for r in rows if r["split"] == "eval"}
    assert len(val_scores) == 8 and all(r["digits/n"] == 60 for r in rows if r["split"] == "eval")  # val, capped
    best = max(val_scores, key=lambda s: (val_scores[s], -s))  # first best (strictly better replaces)
    sel = res.selection
    assert res.split == "test" and sel["split"] == "val" and sel["sources"] == {"digits": "holdout"}
    assert sel["best_step"] == best and res.checkpoint_step == best and res.steps == 8
    assert sel["val_metrics"]["score"] == val_scores[best]
    # the reported numbers = an independent evaluation of checkpoints/best (= step <best>) on test
    independent = _evaluate(cfg, res.run_dir)
    assert independent == res.metrics
    step_best = _evaluate(cfg, res.run_dir, res.run_dir / "checkpoints" / f"step_{best}" / "prompts.safetensors")
    last = _evaluate(cfg, res.run_dir, res.run_dir / "checkpoints" / "step_8" / "prompts.safetensors")
    assert step_best == res.metrics
    assert best != 8 and last != res.metrics  # this seed/lr: val peaks before the end, test differs
    assert [r for r in rows if r["split"] == "test"][-1]["checkpoint_step"] == best
    # the loop's own record names the split its figures are on (val here, not the reported test)
    loop = json.loads((res.run_dir / "result.json").read_text())
    assert loop["eval_split"] == "val" and loop["best"]["step"] == best and loop["final"]["digits/n"] == 60


def test_results_files_name_the_splits(runs):
    _, res = runs["sel"]
    md = (res.run_dir / "results.md").read_text()
    assert "test metrics of the checkpoint best on val" in md and f"step {res.selection['best_step']} of 8" in md
    with (res.run_dir / "results.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["checkpoint"] == "best on val (holdout)" and int(row["step"]) == res.selection["best_step"]
    assert float(row["test_accuracy"]) == pytest.approx(res.accuracy())
    assert float(row["val_accuracy"]) == pytest.approx(res.selection["val_metrics"]["digits/accuracy"])
    assert row["test_n"] == "360" and row["val_n"] == "60"  # counts are integers


def test_without_eval_the_last_step_is_reported_on_test(runs):
    cfg, res = runs["last"]
    assert res.selection is None and res.split == "test" and res.checkpoint_step == 8
    rows = [json.loads(l) for l in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [8] and evals[0]["score"] == res.metrics["score"]
    loop = json.loads((res.run_dir / "result.json").read_text())
    assert loop["eval_split"] == "test" and loop["final"]["score"] == res.metrics["score"]
    assert _evaluate(cfg, res.run_dir, res.run_dir / "checkpoints" / "step_8" / "prompts.safetensors") == res.metrics
    md = (res.run_dir / "results.md").read_text()
    assert "test metrics at the last step (8); no model selection" in md
    with (res.run_dir / "results.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["checkpoint"] == "last step" and "val_accuracy" not in row and "test_accuracy" in row


# ------------------------------------------------------------------ few-shot table labels

def test_fewshot_table_states_split_and_selection(tmp_path, monkeypatch):
    def fake(cfg, backbone=None):
        t = cfg.tasks()[0]
        sel = None if cfg.stage == "zeroshot" else {"best_step": 3, "split": "val"}
        return StageResult(cfg.stage, cfg.resolved_run_dir(), {f"{t.name}/accuracy": 50.0, "score": 50.0},
                           [{"name": t.name}], steps=5, split="test", selection=sel)

    monkeypatch.setattr(sweep, "run_stage", fake)
    data = {"target": "digits", "output_dir": str(tmp_path),
            "sweep": {"shots": [1], "seeds": [1], "methods": [{"name": "ZS", "stage": "zeroshot"},
                                                               {"name": "CoOp", "stage": "single"}]}}
    out = sweep.run_fewshot(load_run_config(None, [], data=data), SimpleNamespace(get=lambda c: None), progress=False)
    title = out["table"].splitlines()[0]
    assert title == "# Few-shot transfer to digits — reported on test; trained prompts: best checkpoint on val"
    with out["paths"]["runs_csv"].open() as f:
        rows = list(csv.DictReader(f))
    coop = next(r for r in rows if r["method"] == "CoOp")
    assert (coop["split"], coop["selected_on"], coop["best_step"]) == ("test", "val", "3")
    assert sweep.split_note([{"method": "A", "selected_on": "last step", "split": "test"}]) == \
        " — reported on test; trained prompts: last training step"
    assert "split" in report.write_sweep_results(out["rows"], tmp_path / "again", [1])["runs_csv"].read_text()


# ------------------------------------------------------------------ epochs → steps (Dassl / CoOp)

def _tasks(*sizes):
    return [SimpleNamespace(train=list(range(n))) for n in sizes]


@pytest.mark.parametrize("sizes,batch,epochs,steps,used_batch", [
    ((10,), 32, 50, 50, 10),   # 10 classes × K=1: one batch of 10 per epoch (not ⌈50·10/32⌉ = 16 steps)
    ((100,), 32, 2, 6, 32),    # ⌊100/32⌋ = 3 batches per epoch (drop_last)
    ((5, 5), 32, 3, 3, 10),    # the stage's total n over its tasks
    ((32,), 32, 4, 4, 32),
])
def test_dassl_epochs_to_steps(sizes, batch, epochs, steps, used_batch):
    cfg = _cfg(train={"batch_size": batch}, train_epochs=epochs)
    out = _steps(cfg, _tasks(*sizes))
    assert (out.train.max_steps, out.train.batch_size) == (steps, used_batch)
    assert out.train.eval_batch_size == (batch if used_batch < batch else 0)  # evaluation keeps its batch
    assert _steps(_cfg(train={"batch_size": batch}), _tasks(*sizes)).train.max_steps == 1000  # epochs off
