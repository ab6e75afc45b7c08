"""Model selection never on the reported split: the val / test parts of ``selection`` (small rule:
eval split halved; large rule: train rows held out), and the best checkpoint reported on test."""

import json
import random
from pathlib import Path

import pytest
import torch

from mvlpt.core.errors import ConfigError, DataError
from mvlpt.core.logging_utils import read_metrics
from text_mpt.config import SelectionConfig, TaskConfig, load_run_config
from text_mpt.data import task_parts
from text_mpt.pipeline import evaluate_run, train_stage

ROOT = Path(__file__).resolve().parents[2]
TINY = {"name": "tiny", "tokenizer": "byt5", "max_input_length": 48, "max_target_length": 16}
TRAIN = {"batch_size": 8, "eval_batch_size": 16, "log_every": 5, "progress": False, "tensorboard": False,
         "device": "cpu", "clip_grad_norm": 0.0, "optim": {"lr": 0.3, "weight_decay": 0.0},
         "schedule": {"name": "constant"}, "distill": {"kl_weight": 0, "mse_weight": 0}}
WORDS = {"good": "positive", "great": "positive", "bad": "negative", "awful": "negative"}


def _write_task(folder: Path, n_train: int = 40, n_dev: int = 30) -> Path:
    """A custom 2-class task; every row's text is unique (``<split> row <i> ...``)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in [("train", n_train), ("dev", n_dev)]:
        with (folder / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                w = rng.choice(sorted(WORDS))
                f.write(json.dumps({"text": f"{split} row {i} was {w}", "label": WORDS[w]}) + "\n")
    return folder


def _task(folder: Path, **kw) -> dict:
    return {"name": "mood", "path": str(folder), "template": "mood: {text}", "labels": ["negative", "positive"], **kw}


def _parts(folder, parts=("train", "val", "test"), few_shot_k=0, **sel):
    return task_parts(TaskConfig(**_task(folder, **sel.pop("task", {}))), SelectionConfig(**sel), few_shot_k=few_shot_k,
                      parts=parts)


def _texts(tp, part):
    return {e.input_text for e in tp.examples[part]}


def test_small_rule_halves_the_dev_split_into_disjoint_val_and_test(tmp_path):
    tp = _parts(_write_task(tmp_path / "mood"), small_threshold=1000)
    assert tp.rule == "small" and tp.info["seed"] == 0 and tp.info["val_from"] == "dev"
    val, test = set(tp.ids["val"]), set(tp.ids["test"])
    assert not val & test and val | test == {f"dev:{i}" for i in range(30)}
    assert len(val) == 15 and len(test) == 15
    assert not _texts(tp, "val") & _texts(tp, "test")
    assert len(tp.examples["train"]) == 40 and all(i.startswith("train:") for i in tp.ids["train"])
    assert (tp.info["train_rows"], tp.info["val_rows"], tp.info["test_rows"]) == (40, 15, 15)


def test_large_rule_holds_val_out_of_training_and_tests_on_full_dev(tmp_path):
    tp = _parts(_write_task(tmp_path / "mood"), small_threshold=10, val_size=12)
    assert tp.rule == "large" and tp.info["val_from"] == "train"
    val, test, train = set(tp.ids["val"]), set(tp.ids["test"]), set(tp.ids["train"])
    assert len(val) == 12 and not val & test and not val & train
    assert val | train == {f"train:{i}" for i in range(40)}  # the held-out rows are removed from training
    assert test == {f"dev:{i}" for i in range(30)}
    assert not _texts(tp, "val") & _texts(tp, "train") and not _texts(tp, "val") & _texts(tp, "test")


def test_split_is_deterministic_for_a_seed_and_changes_with_it(tmp_path):
    folder = _write_task(tmp_path / "mood")
    for rule in ({"small_threshold": 1000}, {"small_threshold": 10, "val_size": 12}):
        a, b = _parts(folder, seed=3, **rule), _parts(folder, seed=3, **rule)
        c = _parts(folder, seed=4, **rule)
        assert a.ids == b.ids
        assert a.ids["val"] != c.ids["val"]
        assert set(c.ids["val"]).isdisjoint(c.ids["test"])


def test_caps_and_few_shot_apply_after_the_split(tmp_path):
    folder = _write_task(tmp_path / "mood")
    full = _parts(folder, small_threshold=20, val_size=12)
    # max_train_examples does not change the rule (the original 40 rows are counted)
    capped = _parts(folder, small_threshold=20, val_size=12, task={"max_train_examples": 5, "max_eval_examples": 4})
    assert capped.rule == "large" and capped.info["train_rows"] == 40
    assert len(capped.ids["train"]) == 5 and set(capped.ids["train"]) <= set(full.ids["train"])
    for part in ("val", "test"):  # max_eval_examples caps val and test each
        assert len(capped.ids[part]) == 4 and set(capped.ids[part]) <= set(full.ids[part])
    # few_shot_k samples from the training part only, after the hold-out
    fs = _parts(folder, few_shot_k=3, small_threshold=20, val_size=12)
    assert fs.ids["val"] == full.ids["val"] and not set(fs.ids["train"]) & set(fs.ids["val"])
    labels = [e.label for e in fs.examples["train"]]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]


def test_selection_config_is_validated(tmp_path):
    base = {"stage": "teachers", "output_dir": str(tmp_path / "r"), "tasks": [_task(tmp_path)], "backbone": TINY,
            "train": TRAIN}
    assert load_run_config(None, data=base).selection.mode == "auto"
    bad = [({"mode": "best"}, "selection.mode: expected one of"), ({"val_size": 0}, "selection.val_size must be >= 1"),
           ({"small_threshold": -1}, "selection.small_threshold"), ({"seeed": 1}, "did you mean 'seed'"),
           ({"mode": "none", "eval_part": "val"}, "needs a val part")]
    for sel, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            load_run_config(None, data={**base, "selection": sel})
    with pytest.raises(DataError, match="cannot hold out selection.val_size=50"):
        _parts(_write_task(tmp_path / "mood"), small_threshold=0, val_size=50)


def _cfg(root: Path, folder: Path, name: str, **extra):
    data = {"stage": "teachers", "output_dir": str(root / name), "tasks": [_task(folder)], "backbone": TINY,
            "prompt": {"length": 4}, "train": {**TRAIN, **extra.pop("train", {})}, **extra}
    return load_run_config(None, data=data)


def test_best_checkpoint_is_the_one_reported_on_test(tmp_path):
    folder = _write_task(tmp_path / "mood")
    # select on the *highest* val loss: the first evaluation (step 5), not the last step
    cfg = _cfg(tmp_path, folder, "run", selection={"small_threshold": 1000, "seed": 1},
               train={"max_steps": 15, "eval_every": 5, "select_metric": "mood/loss", "select_mode": "max"})
    out = train_stage(cfg)
    run = Path(out["run_dir"])
    assert out["step"] == 15 and out["best_step"] < 15
    assert out["metrics"] == out["test"] and out["test"]["mood/n"] == 15 and out["val"]["mood/n"] == 15
    # an independent evaluation of checkpoints/best on the same test part gives the reported numbers
    best = evaluate_run(cfg.__class__(**{**cfg.__dict__, "checkpoint": str(run / "checkpoints/best")}))
    assert best["split"] == "test"
    for k in ("mood/accuracy", "mood/loss"):
        assert out["test"][k] == pytest.approx(best["metrics"][k], abs=1e-5)
    last = evaluate_run(cfg.__class__(**{**cfg.__dict__, "checkpoint": str(run / "checkpoints/step_15")}))
    assert last["metrics"]["mood/loss"] != pytest.approx(out["test"]["mood/loss"], abs=1e-5)
    # results name the splits and the convention; config.json / splits.json record the split
    md = (run / "results.md").read_text()
    assert "model selection on val, reported on test" in md and f"step {out['best_step']}" in md
    assert "| mood | test |" in md and "| mood | val |" in md and "small rule" in md
    csv = (run / "results.csv").read_text().splitlines()
    assert csv[0].startswith("task,split,step,score") and {l.split(",")[1] for l in csv[1:]} == {"test", "val"}
    sel = json.loads((run / "config.json").read_text())["meta"]["selection"]
    assert sel["mode"] == "auto" and sel["seed"] == 1
    assert sel["tasks"]["mood"]["rule"] == "small" and sel["tasks"]["mood"]["val_rows"] == 15
    ids = json.loads((run / "splits.json").read_text())["mood"]
    assert len(ids["val"]) == 15 and not set(ids["val"]) & set(ids["test"])
    assert [r["split"] for r in read_metrics(run)].count("test") == 1
    loop = json.loads((run / "result.json").read_text())  # the loop's record: on val, and says so
    assert loop["eval_split"] == "val" and loop["final"]["mood/n"] == 15 and loop["best"]["step"] == out["best_step"]
    assert "test part" in (run / "eval" / "results.md").read_text()


@pytest.mark.parametrize("mode", ["dev", "none"])
def test_legacy_and_no_selection_modes_are_labelled(tmp_path, mode):
    folder = _write_task(tmp_path / "mood", n_train=16, n_dev=12)
    out = train_stage(_cfg(tmp_path, folder, mode, selection={"mode": mode}, train={"max_steps": 3, "eval_every": 0}))
    md = (Path(out["run_dir"]) / "results.md").read_text()
    assert out["test"]["mood/n"] == 12 and out["best_step"] == 3
    loop = json.loads((Path(out["run_dir"]) / "result.json").read_text())
    assert loop.get("eval_split") == ("dev" if mode == "dev" else None)
    if mode == "dev":
        assert "selected AND reported" in md and "| mood | dev |" in md and out["val"] == out["test"]
    else:
        assert "no model selection" in md and "| mood | test |" in md and out["val"] == {}
        assert not [r for r in read_metrics(out["run_dir"]) if r["split"] == "eval"]


def test_shared_rte_uses_the_small_rule(shared_data):
    cfg = load_run_config(ROOT / "configs/text/tiny/adapt.yaml", [f"data_root={shared_data}"])
    tp = task_parts(cfg.tasks[0], cfg.selection, cfg.data_root, cfg.train.seed, cfg.few_shot_k, cfg.few_shot_seed)
    assert tp.rule == "small" and tp.info["train_rows"] == 2240 and tp.info["eval_rows"] == 249
    assert (tp.info["val_rows"], tp.info["test_rows"]) == (124, 125)
    assert len(tp.ids["val"]) == len(tp.ids["test"]) == 32 and not set(tp.ids["val"]) & set(tp.ids["test"])
    assert len(tp.examples["train"]) == 32  # few_shot_k=16 per class
