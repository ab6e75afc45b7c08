"""The text head trusts the run: eval / adapt / predict use the backbone a run was trained on (a config
naming another one is refused, naming both); ``tiny-t5`` is the shipped model; ``$MVLPT_DATA`` is honoured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tmpt_helpers import task_dicts, write_synthetic

from mvlpt.core.errors import ConfigError
from text_mpt.cli import main
from text_mpt.config import load_run_config
from text_mpt.inference import Predictor
from text_mpt.pipeline import evaluate_run, train_stage

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "text_mpt" / "weights" / "tiny-t5"
TINY = {"name": "tiny", "tokenizer": "byt5", "max_input_length": 64, "max_target_length": 16}
TRAIN = {"max_steps": 2, "batch_size": 4, "eval_batch_size": 16, "log_every": 1, "eval_every": 0, "progress": False,
         "tensorboard": False, "device": "cpu", "distill": {"kl_weight": 0, "mse_weight": 0}}


def _cfg(root: Path, stage: str, tasks: list, backbone: dict | None = TINY, out: str | None = None, **extra):
    data = {"stage": stage, "output_dir": str(root / (out or stage)), "tasks": tasks, "prompt": {"length": 4},
            "train": TRAIN, **extra}
    if backbone is not None:
        data["backbone"] = backbone
    return load_run_config(None, data=data)


def _seed(seed: int) -> dict:
    return {**TINY, "tiny": {"seed": seed}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    paths = write_synthetic(root / "data", n_train=16, n_dev=8)
    src = task_dicts(paths, ["polarity", "topic"])
    teachers = train_stage(_cfg(root, "teachers", src))
    source = train_stage(_cfg(root, "source", src))
    return {"root": root, "paths": paths, "src": src, "teachers": teachers["run_dir"], "source": source["run_dir"]}


def _meta_backbone(run_dir: str) -> dict:
    return json.loads((Path(run_dir) / "checkpoints" / "best" / "config.json").read_text())["meta"]["backbone"]


def test_a_run_records_its_backbone(runs):
    ident = _meta_backbone(runs["source"])
    assert ident["name"] == "tiny" and ident["tiny"]["seed"] == 0 and ident["tokenizer"] == "byt5"
    assert len(ident["weights"]) == 16 and len(ident["vocab"]) == 16 and ident["vocab_size"] == 384
    assert ident == _meta_backbone(runs["teachers"])  # same backbone, same identity


def test_eval_on_another_backbone_is_refused_naming_both(runs, capsys):
    cfg = _cfg(runs["root"], "source", runs["src"], backbone=_seed(1), checkpoint=runs["source"], out="ev")
    with pytest.raises(ConfigError) as e:
        evaluate_run(cfg)
    msg = str(e.value)
    assert f"checkpoint {runs['source']} was trained on backbone.name='tiny' (tiny:" in msg
    assert "seed=0" in msg and "seed=1" in msg and "this config gives" in msg
    assert msg.count("[weights ") == 2  # both fingerprints
    yaml = runs["root"] / "ev.yaml"
    yaml.write_text(json.dumps({"stage": "source", "output_dir": str(runs["root"] / "ev_cli"), "tasks": runs["src"],
                                "backbone": _seed(1), "checkpoint": runs["source"], "train": TRAIN}))
    assert main(["eval", str(yaml)]) == 2
    assert "text-mpt: error: checkpoint" in capsys.readouterr().err


def test_eval_on_the_same_backbone_or_none_named_is_accepted(runs):
    same = evaluate_run(_cfg(runs["root"], "source", runs["src"], checkpoint=runs["source"], out="ev_same"))
    unnamed = evaluate_run(_cfg(runs["root"], "source", runs["src"], backbone={"max_input_length": 64},
                                checkpoint=runs["source"], out="ev_unnamed"))  # backbone.name unset: the run's
    assert unnamed["metrics"] == pytest.approx(same["metrics"])


def test_adapt_and_source_read_runs_of_their_own_backbone_only(runs):
    root, paths = runs["root"], runs["paths"]
    target = task_dicts(paths, ["review"])
    with pytest.raises(ConfigError, match=r"prompt\.source_path .* was trained on .*seed=0.*this config gives.*seed=1"):
        train_stage(_cfg(root, "target", target, backbone=_seed(1), out="t1", prompt={"length": 4,
                                                                                     "source_path": runs["source"]}))
    with pytest.raises(ConfigError, match=r"teacher_path .* was trained on .*seed=0.*seed=1"):
        train_stage(_cfg(root, "source", runs["src"], backbone=_seed(1), out="s1", teacher_path=runs["teachers"],
                         train={**TRAIN, "distill": {"kl_weight": 1.0, "mse_weight": 0}}))
    # backbone.name unset: the source run's backbone, recorded as such
    out = train_stage(_cfg(root, "target", target, backbone=None, out="t0",
                           prompt={"length": 4, "source_path": runs["source"]}))
    assert _meta_backbone(out["run_dir"]) == _meta_backbone(runs["source"])


def test_predict_refuses_a_backbone_whose_weights_changed(runs, tmp_path, monkeypatch):
    row = {"task": "polarity", "text": "a good film"}
    monkeypatch.chdir(tmp_path)  # any directory
    assert Predictor.from_run(runs["source"], device="cpu").predict([row])[0]["task"] == "polarity"
    copy = tmp_path / "copy"
    shutil.copytree(runs["source"], copy)
    cfg_file = copy / "checkpoints" / "best" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["meta"]["backbone"]["weights"] = "0" * 16
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="weights 0000000000000000.*loading it now gives"):
        Predictor.from_run(copy, device="cpu")


def test_tiny_t5_names_the_shipped_weights_with_their_tokenizer(tmp_path, monkeypatch):
    from transformers import ByT5Tokenizer

    from text_mpt.backbone import load_backbone
    from text_mpt.config import BackboneConfig

    monkeypatch.chdir(tmp_path)  # not the repository root
    cfg = BackboneConfig(name="tiny-t5")
    model, tok = load_backbone(cfg)
    assert not isinstance(tok, ByT5Tokenizer) and len(tok) == model.config.vocab_size == 8100
    from text_mpt.run_backbone import backbone_identity

    by_path = BackboneConfig(name=str(WEIGHTS), tokenizer="tiny-t5")
    same = backbone_identity(by_path, *load_backbone(by_path))
    ident = backbone_identity(cfg, model, tok)
    assert (ident["weights"], ident["vocab"]) == (same["weights"], same["vocab"])
    assert ident["source"] == ident["tokenizer_source"] == str(WEIGHTS)
    with pytest.raises(ConfigError, match="byte ids"):
        load_backbone(BackboneConfig(name="tiny-t5", tokenizer="byt5"))


def _rte(root: Path) -> Path:
    folder = root / "glue" / "RTE"
    folder.mkdir(parents=True)
    for split, n in [("train", 12), ("dev", 8)]:
        rows = [{"idx": i, "text_a": f"premise {i}", "text_b": f"hypothesis {i}",
                 "label": ["entailment", "not_entailment"][i % 2]} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_mvlpt_data_is_honoured_by_both_heads(tmp_path, monkeypatch):
    from mvlpt.clip.pretrain import data as clip_pretrain_data
    from text_mpt.pretrain import data as t5_pretrain_data

    data = _rte(tmp_path / "data")
    monkeypatch.delenv("MVLPT_SHARED_DATA", raising=False)
    monkeypatch.setenv("MVLPT_DATA", str(data))
    assert clip_pretrain_data.default_data_root() == t5_pretrain_data.default_data_root() == data
    from mvlpt.core.data_root import SHARED_DATA
    from text_mpt.pipeline import build_parts, resolve_data_root

    cfg = load_run_config(None, data={"stage": "target", "output_dir": str(tmp_path / "o"), "tasks": [{"name": "rte"}]})
    (tp,) = build_parts(cfg)  # data_root unset: $MVLPT_DATA (not the hub)
    assert len(tp.examples["train"]) == 12 and len(tp.examples["val"]) + len(tp.examples["test"]) == 8
    assert resolve_data_root("") == str(data) and resolve_data_root("elsewhere") == "elsewhere"
    monkeypatch.delenv("MVLPT_DATA")
    monkeypatch.setenv("MVLPT_SHARED_DATA", str(data / "old"))  # the old name still works
    assert resolve_data_root(None) == str(data / "old") == str(t5_pretrain_data.default_data_root())
    monkeypatch.delenv("MVLPT_SHARED_DATA")
    assert resolve_data_root(None) is None  # the hub
    assert resolve_data_root("") == str(SHARED_DATA) and SHARED_DATA == ROOT.parent / "shared" / "data"
    tiny = load_run_config(ROOT / "configs" / "text" / "tiny" / "teachers.yaml")
    assert tiny.data_root == "" and tiny.backbone.name == "tiny-t5"  # the demo: $MVLPT_DATA, else ../shared/data
