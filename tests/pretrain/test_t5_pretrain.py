"""tiny-t5 pretraining: span corruption, the offline SentencePiece tokenizer, and a few steps of the
span-corruption + supervised mixture that lower the loss."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from mvlpt.core.checkpoint import load_tensors
from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.span_corruption import random_spans_noise_mask, span_corrupt

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5.yaml"
SENTINELS = list(range(1000, 900, -1))  # <extra_id_i> = 1000 - i, as in T5 (ids count down)
WORDS = ("the cat sat on a mat while a dog slept near the warm fire and the bird sang a short song "
         "about rain on the hills where children played a game of ball until the sun went down").split()


def _corpus(n: int = 400, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"idx": i, "text_a": " ".join(rng.choices(WORDS, k=rng.randint(8, 20))), "text_b": None, "label": "x"}
            for i in range(n)]


@pytest.mark.parametrize("length", [20, 96, 500])
def test_noise_mask_density_and_spans(length: int):
    mask = random_spans_noise_mask(length, 0.15, 3.0, random.Random(1))
    n_noise = round(length * 0.15)
    assert len(mask) == length and sum(mask) == n_noise
    spans = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
    assert spans == max(1, round(n_noise / 3.0))
    assert not mask[0] and mask[-1]  # starts with kept tokens, ends with a noise span


def test_span_corrupt_sentinels_in_order_and_reversible():
    tokens = list(range(10, 110))
    inputs, labels = span_corrupt(tokens, SENTINELS, eos_id=1, rng=random.Random(3))
    assert inputs[-1] == 1 and labels[-1] == 1
    in_s = [t for t in inputs if t in SENTINELS]
    assert in_s == SENTINELS[: len(in_s)] and [t for t in labels if t in SENTINELS] == in_s
    # filling each sentinel of the input with its span from the labels gives the original back
    spans, cur = {}, None
    for t in labels[:-1]:
        if t in SENTINELS:
            cur = t
            spans[cur] = []
        else:
            spans[cur].append(t)
    rebuilt = [x for t in inputs[:-1] for x in (spans[t] if t in SENTINELS else [t])]
    assert rebuilt == tokens
    assert len(labels) - 1 - len(in_s) == round(100 * 0.15)
    # the same rng seed gives the same corruption
    assert span_corrupt(tokens, SENTINELS, 1, rng=random.Random(3)) == (inputs, labels)


def test_tokenizer_trains_offline_and_reloads(tmp_path: Path):
    from transformers import AutoTokenizer

    texts = [" ".join(r["text_a"] for r in _corpus(50, s)) for s in range(20)]
    pretrain.train_tokenizer(texts, tmp_path / "tok", vocab_size=120, extra_ids=10)
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_file=str(tmp_path / "tok" / "sentencepiece.model")).get_piece_size()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert 40 < pieces <= 120 and len(tok) == pieces + 10
    sent = pretrain.sentinel_ids(tok, 10)
    assert len(set(sent)) == 10 and min(sent) >= pieces
    ids = tok("the cat sat on a mat").input_ids
    assert ids[-1] == 1 and 2 not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "the cat sat on a mat"
    with pytest.raises(ConfigError, match="sentinel"):
        pretrain.sentinel_ids(tok, 11)


def test_config_checks_sentinel_budget():
    with pytest.raises(ConfigError, match="extra_ids"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.extra_ids=2"])


def test_pretrain_lowers_span_corruption_loss_and_exports(tmp_path: Path, one_thread):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    for name in ("A", "B"):
        f = tmp_path / "data" / "glue" / name / "train.jsonl"
        f.parent.mkdir(parents=True)
        f.write_text("\n".join(json.dumps(r) for r in _corpus(300, seed=ord(name))) + "\n")
    # supervised part: SST-2-format rows whose label is whether "cat" occurs (learnable from the input)
    sst = [{**r, "label": str(int("cat" in r["text_a"].split()))} for r in _corpus(300, seed=7)]
    (tmp_path / "data" / "glue" / "SST-2").mkdir(parents=True)
    (tmp_path / "data" / "glue" / "SST-2" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in sst) + "\n")
    overrides = [
        f"data.root={tmp_path / 'data'}", "data.files=[glue/A/train.jsonl, glue/B/train.jsonl]", "data.supervised=[sst2]",
        "data.vocab_size=100", "data.extra_ids=20", "data.chunk_length=32", "data.eval_fraction=0.1",
        "model={d_model: 32, d_ff: 64, num_layers: 2, num_heads: 2, d_kv: 16}",
        f"run_dir={tmp_path / 'run'}", f"export_dir={tmp_path / 'export'}", "threads=1",
        "train.max_steps=40", "train.batch_size=16", "train.log_every=10", "train.eval_every=0", "train.save_every=0",
        "train.schedule.warmup_steps=5", "train.optim.lr=1e-2",
    ]
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, overrides)
    result = pretrain.run(cfg)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if r["split"] == "train"]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.4, losses
    assert result["final"]["token_accuracy"] > 0.2
    # supervised examples ("sst2 sentence: ..." → negative/positive) are evaluated too: their targets are short
    # and few, so their loss falls far below the span-corruption loss
    assert result["final"]["supervised_loss"] < result["final"]["eval_loss"] - 1.0
    # the loop's checkpoint (tied embeddings stored once) restores the same weights
    restored = pretrain.T5PretrainModel(pretrain.build_t5(cfg.model, result["vocab"], seed=1))
    restored.load_trainable_state_dict(load_tensors(tmp_path / "run" / "checkpoints" / "step_40" / "prompts.safetensors"))
    assert restored.t5.lm_head.weight.data_ptr() == restored.t5.shared.weight.data_ptr()
    assert torch.equal(restored.t5.shared.weight, load_tensors(tmp_path / "run" / "checkpoints" / "step_40" / "prompts.safetensors")["t5.shared.weight"])
    model = T5ForConditionalGeneration.from_pretrained(str(tmp_path / "export"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "export"))
    assert model.config.vocab_size == len(tok) == result["vocab"] and model.dtype == torch.float32
    meta = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert meta["steps"] == 40 and meta["data_stats"]["chunks_eval"] >= 1
    mix = meta["mixture"]
    assert mix["span_corruption"]["files"] == ["glue/A/train.jsonl", "glue/B/train.jsonl"]
    assert mix["supervised"]["tasks"]["sst2"]["file"] == "glue/SST-2/train.jsonl"
    assert mix["span_corruption"]["rate"] + mix["supervised"]["rate"] == pytest.approx(1.0)
    assert mix["supervised"]["rows_train"] + meta["data_stats"]["supervised_eval"] == 300
    assert meta["trained_on"]["torch_threads"] == 1 and meta["train_seconds"] > 0
    assert pretrain.fixed_sample_loss(model, tok, 20) == pytest.approx(meta["fixed_sample_loss"], abs=1e-5)
    # --export-only rebuilds the same export from the run's checkpoint and tokenizer
    again = tmp_path / "again"
    assert pretrain.main(["--config", str(CONFIG), *overrides, f"export_dir={again}", "--export-only"]) == 0
    assert json.loads((again / "metadata.json").read_text())["fixed_sample_loss"] == pytest.approx(meta["fixed_sample_loss"], abs=1e-6)
    with torch.no_grad():
        out = model(**tok(["the cat sat on a mat"], return_tensors="pt"), labels=tok(["the dog"], return_tensors="pt").input_ids)
    assert torch.isfinite(out.loss)
