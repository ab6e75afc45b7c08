"""The frozen image tower with visual prompt tokens (VPT).

:meth:`VisionTower.encode` re-implements open_clip 3.3's ``VisionTransformer.forward`` token
path — patch embedding (``conv1``) → class token → positional embedding → patch dropout →
``ln_pre`` → transformer blocks → pooling / ``ln_post`` / ``proj`` — with ``l`` prompt tokens
placed right after the class token (after ``ln_pre``, as MVLPT does):

* **shallow** prompts ``(B, l, d)`` are inserted once, before the first block, and then
  travel through the blocks like the other tokens;
* **deep** prompts ``(B, L, l, d)`` (``L`` = number of blocks): ``[:, 0]`` is inserted before
  block 0 and, before every later block ``i``, the ``l`` prompt outputs of block ``i-1`` are
  *replaced* by ``[:, i]``. So a layer's output never feeds the next layer's prompt slots.

Prompt tokens are removed before pooling, so ``avg`` pooling and attention poolers see the
same tokens as without prompts. A zero prompt is *not* a no-op (a zero token still receives
LayerNorm's bias and takes attention mass); with ``l = 0`` (or ``prompts=None``) the result is
open_clip's ``encode_image`` exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from mvlpt.core.errors import ConfigError, ShapeMismatchError

from .feature_cache import FeatureCache, cache_of, frozen_input, memo_of
from .text_tower import run_blocks


class VisionTower:
    """View of an open_clip model's image tower (owns no parameters)."""

    def __init__(self, clip_model: nn.Module):
        from open_clip.transformer import VisionTransformer

        self.visual = clip_model.visual
        self.unsupported: str | None = None
        if not isinstance(self.visual, VisionTransformer):
            self.unsupported = f"the image tower is a {type(self.visual).__name__}, not an open_clip VisionTransformer"

    def require_prompts(self, what: str) -> None:
        """Raise a clear error if this tower cannot take visual prompts."""
        if self.unsupported:
            raise ConfigError(f"{what} needs a ViT image tower (open_clip VisionTransformer), but {self.unsupported}; "
                              "visual prompts are only defined for ViTs — use prompt.method=coop with this backbone")

    @property
    def width(self) -> int:
        return int(self.visual.conv1.out_channels)

    @property
    def layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    def _embed(self, images: Tensor) -> Tensor:
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))  # (B, d, gh, gw)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, gh*gw, d)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)
        return v.ln_pre(x)

    def encode(self, images: Tensor, prompts: Tensor | None = None, use_checkpoint: bool = False) -> Tensor:
        """Image features ``(B, e)``.

        Args:
            images: ``(B, 3, H, W)``.
            prompts: ``None``, shallow ``(B, l, d)`` or deep ``(B, L, l, d)`` prompt tokens.
            use_checkpoint: activation checkpointing in the blocks.
        """
        if prompts is None and frozen_input(self.visual, images):
            # prompt-free, frozen: the same for every task model of this backbone (teacher and student)
            frozen = lambda x: self._encode(x, None, False)  # noqa: E731
            if FeatureCache.usable(self.visual, images):
                return cache_of(self.visual).encode(self.visual, images, frozen)
            return memo_of(self.visual).encode(self.visual, images, frozen)
        return self._encode(images, prompts, use_checkpoint)

    def _encode(self, images: Tensor, prompts: Tensor | None, use_checkpoint: bool) -> Tensor:
        if self.unsupported:
            if prompts is not None:
                self.require_prompts("visual prompts")
            out = self.visual(images)
            return out[0] if isinstance(out, tuple) else out
        v = self.visual
        x = self._embed(images)
        b = x.shape[0]
        n_prompt = 0
        hook: Callable[[int, Tensor], Tensor] | None = None
        if prompts is not None:
            deep = prompts.dim() == 4
            if prompts.shape[0] != b or prompts.shape[-1] != self.width or (deep and prompts.shape[1] != self.layers):
                want = f"(B={b}, {'L=' + str(self.layers) + ', ' if deep else ''}l, d={self.width})"
                raise ShapeMismatchError(f"visual prompts have shape {tuple(prompts.shape)}; this image tower expects {want}")
            prompts = prompts.to(x.dtype)
            n_prompt = prompts.shape[-2]
            first = prompts[:, 0] if deep else prompts
            x = torch.cat([x[:, :1], first, x[:, 1:]], dim=1)
            if deep:
                def deep_prompts(i: int, t: Tensor) -> Tensor:
                    if i == 0:
                        return t
                    return torch.cat([t[:, :1], prompts[:, i], t[:, 1 + n_prompt:]], dim=1)
                hook = deep_prompts
        x = run_blocks(v.transformer, x, None, use_checkpoint, before_block=hook)
        if n_prompt:
            x = torch.cat([x[:, :1], x[:, 1 + n_prompt:]], dim=1)
        pooled, _ = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
        return pooled
