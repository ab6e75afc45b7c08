"""Mimetic initialisation of a from-scratch T5's self-attention (Trockman & Kolter, ICML 2023).

Pretrained transformers' self-attention weights have a visible structure: ``W_q W_kᵀ`` is close to a
positive multiple of the identity (a token attends to tokens like itself) and ``W_v W_o`` close to a
negative one. "Mimetic initialization" starts a random transformer there, and makes small-data
training markedly better. For a miniature T5 it is a direct aid to sentence-pair tasks: with
``x W_q W_kᵀ yᵀ`` large for ``y ≈ x``, a word of the question attends to the same (or, with pretrained
embeddings, a similar) word of the passage from the first step, the lexical-alignment feature that
QNLI's labels largely follow.

Per self-attention layer, with ``d = d_model`` and ``Z ~ N(0, 1/d)``:

* ``A = (α₁ Z + β₁ I) / √d_kv`` is factorised by SVD into ``q.weight = √Σ Uᵀ`` and ``k.weight = √Σ Vᵀ``,
  so that ``q.weightᵀ k.weight = A`` (T5 does not scale its scores by ``1/√d_kv``; the factor does it);
* ``M = α₂ Z' − β₂ I`` into ``v.weight = √Σ Vᵀ`` and ``o.weight = U √Σ``, so that ``o ∘ v = M``.

Cross-attention keeps T5's random initialisation. With ``W_q W_kᵀ ≈ I`` a token's best match is itself,
which says nothing about the other segment; ``self_bias`` (< 0) starts the encoder's relative-position
bias of a token with itself (bucket 0, shared by every encoder layer) there, so that from the first
step a word attends to its *other* occurrences. The other buckets keep T5's initialisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mvlpt.core.errors import ConfigError

#: recognised values of ``model.attn_init``
ATTN_INITS = ("", "mimetic")


def check_attn_init(name: str) -> None:
    """Refuse an unknown ``model.attn_init`` before any work starts."""
    if name not in ATTN_INITS:
        raise ConfigError(f"model.attn_init must be one of {list(ATTN_INITS)}, found {name!r}")


def _factor(target: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    """``left (d × rows)``, ``right (rows × d)`` with ``left @ right`` the best rank-``rows`` approximation
    of ``target`` (exact when ``rows >= d``), split evenly by the singular values."""
    u, s, vh = torch.linalg.svd(target.double())
    k = min(rows, s.numel())
    root = s[:k].sqrt()
    left = torch.zeros(target.shape[0], rows, dtype=torch.double)
    right = torch.zeros(rows, target.shape[1], dtype=torch.double)
    left[:, :k] = u[:, :k] * root
    right[:k] = root[:, None] * vh[:k]
    return left.float(), right.float()


@torch.no_grad()
def mimetic_init(t5: nn.Module, seed: int = 0, alpha_qk: float = 0.7, beta_qk: float = 0.7,
                 alpha_vo: float = 0.4, beta_vo: float = 0.4, self_bias: float = 0.0) -> dict[str, Any]:
    """Overwrite the q/k/v/o weights of every self-attention layer of ``t5`` (encoder and decoder)
    mimetically, and set the encoder's self-position bias to ``self_bias`` when it is not 0; returns
    what was done (layers, and the mean diagonal share of ``q kᵀ`` as a check)."""
    gen = torch.Generator().manual_seed(seed)
    layers, diag = 0, []
    for name, module in t5.named_modules():
        if not name.endswith("SelfAttention"):
            continue
        d = module.q.weight.shape[1]
        inner = module.q.weight.shape[0]
        d_kv = module.key_value_proj_dim
        eye = torch.eye(d, dtype=torch.double)
        z = torch.randn(d, d, generator=gen, dtype=torch.double) / math.sqrt(d)
        a = (alpha_qk * z + beta_qk * eye) / math.sqrt(d_kv)
        left, right = _factor(a, inner)          # a ≈ left @ right = q.weightᵀ @ k.weight
        module.q.weight.copy_(left.T)
        module.k.weight.copy_(right)
        z2 = torch.randn(d, d, generator=gen, dtype=torch.double) / math.sqrt(d)
        m = alpha_vo * z2 - beta_vo * eye
        left, right = _factor(m, inner)          # m ≈ left @ right = o.weight @ v.weight
        module.o.weight.copy_(left)
        module.v.weight.copy_(right)
        qk = module.q.weight.double().T @ module.k.weight.double()
        diag.append(float(qk.diagonal().sum() / qk.abs().sum()))
        layers += 1
    if not layers:
        raise ConfigError("model.attn_init: no T5 self-attention layer found")
    if self_bias:
        bias = t5.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        bias[0] = self_bias                       # bucket 0: relative position 0 (bidirectional buckets)
    return {"method": "mimetic", "layers": layers, "alpha_qk": alpha_qk, "beta_qk": beta_qk,
            "alpha_vo": alpha_vo, "beta_vo": beta_vo, "self_bias": self_bias,
            "qk_diagonal_share": round(sum(diag) / len(diag), 4)}
