"""``model.attn_init: mimetic``: a from-scratch T5's self-attention started as Trockman & Kolter's mimetic
initialisation. The factors reproduce their targets (``W_qᵀW_k`` a positive near-identity, ``W_o W_v`` a
negative one), a token then attends to its own copies far more than to other tokens (the point of it),
cross-attention is left alone, the result is seeded, and an unknown value fails at config load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.pretrain import attn_init

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5.yaml"
TINY = pretrain.T5ModelConfig(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)


def test_factors_reproduce_the_mimetic_targets():
    t5 = pretrain.build_t5(TINY, 60, seed=0)
    cross_before = t5.decoder.block[0].layer[1].EncDecAttention.q.weight.detach().clone()
    stats = attn_init.mimetic_init(t5, seed=0)
    assert stats["layers"] == 4  # 2 encoder + 2 decoder self-attention layers
    for name, m in t5.named_modules():
        if not name.endswith("SelfAttention"):
            continue
        qk = m.q.weight.double().T @ m.k.weight.double()
        vo = m.o.weight.double() @ m.v.weight.double()
        # inner = heads * d_kv = d_model: the factorisation is exact
        eye = torch.eye(32, dtype=torch.double)
        assert float((qk * eye).sum()) / 32 == pytest.approx(0.7 / 8 ** 0.5, rel=0.15)
        assert float((vo * eye).sum()) / 32 == pytest.approx(-0.4, rel=0.2)
        off = qk[~eye.bool()]
        assert float(qk.diagonal().mean()) > 5 * float(off.std())  # near-identity: the diagonal dominates
    assert torch.equal(t5.decoder.block[0].layer[1].EncDecAttention.q.weight, cross_before)
    again = pretrain.build_t5(TINY, 60, seed=0)
    attn_init.mimetic_init(again, seed=0)
    assert torch.equal(again.encoder.block[1].layer[0].SelfAttention.k.weight, t5.encoder.block[1].layer[0].SelfAttention.k.weight)


def test_a_token_attends_to_its_copies():
    """The attention score of a token with an identical token is far above its score with other tokens,
    after mimetic init; under T5's random init it is not."""
    torch.manual_seed(0)
    x = torch.randn(40, 32)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt()  # RMS-normalised, as T5 feeds attention

    def margin(t5: torch.nn.Module) -> float:
        m = t5.encoder.block[0].layer[0].SelfAttention
        s = m.q(x) @ m.k(x).T
        off = s[~torch.eye(40, dtype=torch.bool)]
        return float((s.diagonal().mean() - off.mean()) / off.std())

    random_t5 = pretrain.build_t5(TINY, 60, seed=0)
    mimetic_t5 = pretrain.build_t5(TINY, 60, seed=0)
    attn_init.mimetic_init(mimetic_t5, seed=0)
    assert margin(mimetic_t5) > 3.0
    assert abs(margin(random_t5)) < 1.0


def test_unknown_attn_init_fails_at_load():
    with pytest.raises(ConfigError, match="model.attn_init"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["model.attn_init=identity"])


def test_self_bias_sends_a_word_to_its_other_occurrence():
    """In the encoder's first layer a token that occurs twice attends mostly to its other occurrence
    once the self-position bias is negative; with T5's random init it does not."""
    ids = torch.tensor([[5, 9, 12, 20, 33, 41, 9, 50, 1]])  # token 9 at positions 1 and 6

    def to_copy(t5: torch.nn.Module) -> float:
        t5.set_attn_implementation("eager")  # sdpa returns no attention weights
        out = t5.encoder(input_ids=ids, output_attentions=True)
        return float(out.attentions[0][0, :, 1, 6].mean())  # heads' mean weight of position 1 on 6

    mimetic = pretrain.build_t5(TINY, 60, seed=0)
    stats = attn_init.mimetic_init(mimetic, seed=0, self_bias=-6.0)
    assert stats["self_bias"] == -6.0
    assert float(mimetic.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight[0].max()) == -6.0
    assert to_copy(mimetic) > 0.4
    assert to_copy(pretrain.build_t5(TINY, 60, seed=0)) < 0.2


def test_self_bias_needs_mimetic():
    with pytest.raises(ConfigError, match="attn_self_bias"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["model.attn_self_bias=-6"])
