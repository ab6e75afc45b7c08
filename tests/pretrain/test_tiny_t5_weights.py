"""The shipped tiny-t5: loads offline (fp32) with its own tokenizer and reproduces its recorded loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvlpt.core.checkpoint import load_tensors
from text_mpt import pretrain

WEIGHTS = pretrain.PACKAGE_DIR


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    return T5ForConditionalGeneration.from_pretrained(str(WEIGHTS)), AutoTokenizer.from_pretrained(str(WEIGHTS))


def test_shipped_files_are_fp16_and_small():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sentencepiece.model",
                 "metadata.json", "README.md"):
        assert (WEIGHTS / name).is_file(), name
    assert (WEIGHTS / "model.safetensors").stat().st_size < 15e6
    assert {t.dtype for t in load_tensors(WEIGHTS / "model.safetensors").values()} == {torch.float16}


def test_loads_in_fp32_with_t5_tokenizer(shipped):
    model, tok = shipped
    assert model.dtype == torch.float32 and model.config.vocab_size == len(tok)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert len(set(pretrain.sentinel_ids(tok, 100))) == 100
    text = "The premise does not entail the hypothesis."
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_reproduces_recorded_span_corruption_loss(shipped):
    model, tok = shipped
    meta = json.loads((WEIGHTS / "metadata.json").read_text())
    loss = pretrain.fixed_sample_loss(model, tok, meta["config"]["data"]["extra_ids"])
    assert loss == pytest.approx(meta["fixed_sample_loss"], abs=1e-5)
    random_init = pretrain.build_t5(pretrain.T5ModelConfig(**meta["config"]["model"]), len(tok))
    assert loss < pretrain.fixed_sample_loss(random_init, tok, 100) - 2.0  # it learned something


def test_metadata_records_a_mixture_without_target_tasks():
    from text_mpt.pretrain.data import ALLOWED_SUPERVISED, TARGET_DIRS, is_target_file

    meta = json.loads((WEIGHTS / "metadata.json").read_text())
    mix = meta["mixture"]
    assert set(mix["excluded_target_dirs"]) == set(TARGET_DIRS)
    files = mix["span_corruption"]["files"] + [t["file"] for t in mix["supervised"]["tasks"].values()]
    assert files == meta["pretraining_data"]
    assert all(f.endswith("/train.jsonl") and not is_target_file(f) for f in files)
    assert set(mix["supervised"]["tasks"]) <= set(ALLOWED_SUPERVISED)
    assert mix["span_corruption"]["rate"] + mix["supervised"]["rate"] == pytest.approx(1.0)
    assert sum(t["rate"] for t in mix["supervised"]["tasks"].values()) == pytest.approx(mix["supervised"]["rate"])
    assert sum(t["train"] for t in mix["supervised"]["tasks"].values()) == mix["supervised"]["rows_train"]
    # the recipe's budget: at most 25 minutes of training on one CPU thread
    assert meta["trained_on"]["torch_threads"] == 1 and 0 < meta["train_seconds"] <= 25 * 60


def test_shipped_model_reproduces_its_recorded_rank_accuracy(shipped, shared_data: Path):
    """Rank classification of the held-out supervised rows (rebuilt as ``prepare`` splits them) by the shipped
    fp16 weights matches the ``<task>/rank_acc`` recorded at the end of training (within one row or so, fp16)."""
    from text_mpt.pretrain.data import read_supervised, target_strings

    model, tok = shipped
    meta = json.loads((WEIGHTS / "metadata.json").read_text())
    d, seed = meta["config"]["data"], meta["config"]["train"]["seed"]
    per_task = read_supervised(shared_data, d["supervised"], target_strings(shared_data))
    pairs, tasks = [], []
    for task, (held, _) in pretrain.held_out_split(per_task, d["eval_fraction"], seed).items():
        pairs += held
        tasks += [task] * len(held)
    items = pretrain.rank_eval_items(tok, pairs, tasks, d["max_target_length"])
    wrapper = pretrain.T5PretrainModel(model)
    wrapper.eval()
    for task in ("sst2", "qnli"):
        idx = [i for i, t in enumerate(tasks) if t == task and i in items]
        assert len(idx) == meta["data_stats"]["rank_eval_rows"][task]
        acc = wrapper.rank_accuracy(tok, [pairs[i] for i in idx], d["max_input_length"], d["max_target_length"])
        assert acc == pytest.approx(meta["final_eval"][f"{task}/rank_acc"], abs=2.5 / len(idx)), task
    # v2.1 learned its supervised tasks: SST-2 well above the majority share of the same rows
    assert meta["final_eval"]["sst2/rank_acc"] > meta["final_eval"]["sst2/majority"] + 0.1
