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
from text_mpt.pretrain.span_corruption import random_spans_noise_mask, span_corrupt

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
    started = json.loads((tmp_path / "run" / "started.json").read_text())  # the commit the run started at
    assert {k: meta[k] for k in started} == started
    assert pretrain.fixed_sample_loss(model, tok, 20) == pytest.approx(meta["fixed_sample_loss"], abs=1e-5)
    # --export-only rebuilds the same export from the run's checkpoint and tokenizer
    again = tmp_path / "again"
    assert pretrain.main(["--config", str(CONFIG), *overrides, f"export_dir={again}", "--export-only"]) == 0
    assert json.loads((again / "metadata.json").read_text())["fixed_sample_loss"] == pytest.approx(meta["fixed_sample_loss"], abs=1e-6)
    with torch.no_grad():
        out = model(**tok(["the cat sat on a mat"], return_tensors="pt"), labels=tok(["the dog"], return_tensors="pt").input_ids)
    assert torch.isfinite(out.loss)


class _WordTok:
    """A word-level stand-in tokenizer (ids 3.. by first appearance; EOS = 1)."""
    eos_token_id = 1

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[self.vocab.setdefault(w, 3 + len(self.vocab)) for w in t.split()] for t in texts]}


def test_rank_classification_scores_the_candidates_and_reports_rank_acc():
    pairs = [("sst2 sentence: good", "positive"), ("sst2 sentence: bad", "negative"), ("sst2 sentence: fine", "positive"),
             ("stsb sentence1: a sentence2: b", "3.2"), ("stsb sentence1: c sentence2: d", "1.0"),
             ("stsb sentence1: e sentence2: f", "4.4")]
    tasks = ["sst2"] * 3 + ["stsb"] * 3
    tok = _WordTok()
    items = pretrain.rank_eval_items(tok, pairs, tasks, 16, max_candidates=2)
    assert set(items) == {0, 1, 2}  # STS-B has 3 distinct targets (> max_candidates): not ranked
    neg, pos = tok(["negative", "positive"])["input_ids"]
    assert items[0] == ("sst2", [neg + [1], pos + [1]], 1) and items[1][2] == 0
    model = pretrain.T5PretrainModel(pretrain.build_t5(pretrain.T5ModelConfig(d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                                                                d_kv=8), 64))
    model.rank_eval = items
    model.eval()
    ids = torch.tensor([[5, 6, 1], [5, 7, 1], [5, 8, 1]])
    scores = model.rank_scores(ids, torch.ones_like(ids), [items[i][1] for i in range(3)])
    # the scores are the summed log-likelihoods of each candidate target (teacher forcing)
    for r in range(3):
        for c, target in enumerate(items[r][1]):
            ll = -model.t5(input_ids=ids[r:r + 1], labels=torch.tensor([target])).loss * len(target)
            assert scores[r][c] == pytest.approx(float(ll), abs=1e-4)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([[4, 1]] * 3),
             "task_ids": torch.tensor([1, 1, 1]), "index": torch.tensor([0, 1, 2])}
    records = model.predict(batch)
    preds = [max(range(2), key=lambda c: scores[r][c]) for r in range(3)]
    assert [r["rank_pred"] for r in records] == preds
    metrics = model.compute_metrics(records)
    assert metrics["sst2/rank_acc"] == pytest.approx(sum(p == g for p, g in zip(preds, [1, 0, 1])) / 3)
    assert metrics["sst2/majority"] == pytest.approx(2 / 3) and "stsb/rank_acc" not in metrics


def test_example_loss_average_weighs_examples_equally():
    t5 = pretrain.build_t5(pretrain.T5ModelConfig(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8), 32)
    labels = torch.tensor([[5, 6, 7, 8, 9, 10, 1], [4, 1, -100, -100, -100, -100, -100]])
    ids = torch.tensor([[3, 4, 1], [5, 6, 1]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    per_row = [float(t5(input_ids=ids[k:k + 1], labels=labels[k:k + 1]).loss) for k in range(2)]
    example = float(pretrain.T5PretrainModel(t5, "example").step(batch).loss)
    token = float(pretrain.T5PretrainModel(t5, "token").step(batch).loss)
    assert example == pytest.approx(sum(per_row) / 2, abs=1e-5)
    assert token == pytest.approx((per_row[0] * 7 + per_row[1] * 2) / 9, abs=1e-5)
