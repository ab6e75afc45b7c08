"""The frozen text tower run on token *embeddings*, so learned context vectors can be spliced in.

:class:`TextTower` reads the parts of an open_clip text tower (``CLIP`` keeps them on the model,
``CustomTextCLIP`` in ``model.text``): token and positional embeddings, the transformer, the
final LayerNorm and the projection. ``encode(embeddings, pool_index)`` is open_clip's
``encode_text`` from the embedding step on, for a sequence trimmed to any length ``n`` (the
causal mask and positional embeddings are cut to ``n``); the feature is read at ``pool_index``
(the end-of-text token). ``encode_ids(ids)`` is the head's one trimmed text encoder: ``encode_text``
of token ids cut after the last end-of-text token (prompted class texts, the zero-shot scorer and
the tiny-CLIP pretraining all encode with it).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mvlpt.core.errors import ConfigError


def run_blocks(transformer: nn.Module, x: Tensor, attn_mask: Tensor | None, use_checkpoint: bool,
               before_block: Callable[[int, Tensor], Tensor] | None = None) -> Tensor:
    """Run an open_clip ``Transformer``'s blocks on batch-first ``x`` (N, n, d).

    Args:
        attn_mask: additive mask (n, n) or None.
        use_checkpoint: activation checkpointing per block (only while gradients are enabled).
        before_block: ``f(i, x) -> x`` applied to the (batch-first) input of block ``i``.
    """
    batch_first = getattr(transformer, "batch_first", True)
    ckpt = use_checkpoint and torch.is_grad_enabled()
    for i, blk in enumerate(transformer.resblocks):
        if before_block is not None:
            x = before_block(i, x)
        if not batch_first:
            x = x.transpose(0, 1)
        if ckpt:
            x = checkpoint(lambda t, b=blk: b(t, attn_mask=attn_mask), x, use_reentrant=False)
        else:
            x = blk(x, attn_mask=attn_mask)
        if not batch_first:
            x = x.transpose(0, 1)
    return x


class TextTower:
    """View of an open_clip model's text tower (not a module: it owns no parameters)."""

    def __init__(self, clip_model: nn.Module):
        self.model = clip_model
        src = clip_model if hasattr(clip_model, "token_embedding") else getattr(clip_model, "text", None)
        self.src = src
        self.unsupported: str | None = None
        if src is None or not hasattr(src, "token_embedding") or not hasattr(src, "transformer"):
            kind = type(getattr(clip_model, "text", clip_model)).__name__
            self.unsupported = (f"the text tower ({kind}) is not an open_clip TextTransformer "
                                "(e.g. a Hugging Face text model)")
            return
        self.pool_type = getattr(clip_model, "text_pool_type", None) or getattr(src, "pool_type", "argmax")
        self.eos_id = getattr(clip_model, "text_eos_id", None) or getattr(src, "eos_id", None)
        if getattr(src, "cls_emb", None) is not None:
            self.unsupported = "the text tower appends a class token (CoCa)"
        elif self.pool_type not in ("argmax", "eos"):
            self.unsupported = f"the text tower pools with {self.pool_type!r} (expected 'argmax' or 'eos')"
        elif self.attn_mask is None:
            self.unsupported = "the text tower has no causal mask"

    # -- properties --------------------------------------------------------------------------
    @property
    def attn_mask(self) -> Tensor | None:
        """The tower's causal mask, read from the model at each use (a buffer: moving the model
        to another device replaces it)."""
        return getattr(self.src, "attn_mask", None)

    def require_prompts(self, what: str) -> None:
        """Raise a clear error if learned text context cannot be inserted into this tower."""
        if self.unsupported:
            raise ConfigError(f"{what} needs an open_clip text transformer with a causal mask and "
                              f"end-of-text pooling, but {self.unsupported}; use prompt.method=vpt")

    @property
    def width(self) -> int:
        return int(self.src.token_embedding.embedding_dim)

    @property
    def context_length(self) -> int:
        return int(self.src.positional_embedding.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.src.transformer.get_cast_dtype()

    # -- encoding ----------------------------------------------------------------------------
    def embed(self, ids: Tensor) -> Tensor:
        """Token embeddings ``(N, n, d)`` of token ids ``(N, n)``."""
        return self.src.token_embedding(ids).to(self.dtype)

    def pool_index(self, ids: Tensor) -> Tensor:
        """Position of the pooled (end-of-text) token of each row of ``ids``."""
        if self.pool_type == "eos":
            return (ids == self.eos_id).int().argmax(dim=-1)
        return ids.argmax(dim=-1)

    def encode(self, x: Tensor, pool_index: Tensor, use_checkpoint: bool = False) -> Tensor:
        """Text features ``(N, e)`` of token embeddings ``x`` ``(N, n, d)``, read at ``pool_index``."""
        n = x.shape[1]
        if n > self.context_length:
            raise ConfigError(f"prompted text has {n} tokens but the text tower's context length is "
                              f"{self.context_length}; shorten the prompt (prompt.text.length) or the class names")
        x = x.to(self.dtype) + self.src.positional_embedding[:n].to(self.dtype)
        mask = self.attn_mask[:n, :n] if self.attn_mask is not None else None
        x = run_blocks(self.src.transformer, x, mask, use_checkpoint)
        x = self.src.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), pool_index]
        proj = self.src.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def encode_ids(self, ids: Tensor, use_checkpoint: bool = False) -> Tensor:
        """``encode_text`` of token ids, trimmed after the last end-of-text token (same result).
        Towers the embedding path does not support use the model's own ``encode_text``."""
        if self.unsupported:
            return self.model.encode_text(ids)
        pool = self.pool_index(ids)
        n = int(pool.max()) + 1 if ids.numel() else 1
        return self.encode(self.embed(ids[:, :n]), pool, use_checkpoint)
