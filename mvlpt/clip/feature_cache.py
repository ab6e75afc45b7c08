"""A memo of prompt-free image features of a frozen image tower (CPU).

Without visual prompts (CoOp, the CoOp teacher of a source stage, evaluation of text-only
prompts) the image tower computes the same function of the same images at every step: a few-shot
run sees its handful of training images hundreds of times, and every run of a sweep evaluates the
same test images. :class:`FeatureCache` keys each image by a hash of its pixel bytes, so it is
exact for any input pipeline (an augmented image simply misses) and shared by every
:class:`~mvlpt.clip.vision_tower.VisionTower` view of one backbone (it lives on the ``visual``
module). It is used only when it cannot change a result: the tower is in eval mode, no gradient
can flow into it, and the input is on the CPU (on a GPU the forward is cheaper than the copy).
A change of the tower's weights (any in-place update bumps a tensor's version) empties it.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch
from torch import Tensor, nn

#: attribute of the ``visual`` module holding its cache
ATTR = "_mvlpt_feature_cache"


class FeatureCache:
    """Image bytes hash → feature row, for one frozen image tower, up to ``max_entries`` rows."""

    def __init__(self, max_entries: int = 200_000):
        self.max_entries = max_entries
        self.rows: dict[bytes, Tensor] = {}
        self.generation: tuple[int, ...] | None = None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def usable(visual: nn.Module, images: Tensor) -> bool:
        """Whether caching cannot change the result: CPU input, eval mode, no gradient into the tower."""
        if images.device.type != "cpu" or visual.training:
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in visual.parameters()))

    def _check_generation(self, visual: nn.Module) -> None:
        gen = tuple(p._version for p in visual.parameters())
        if gen != self.generation:
            self.rows.clear()
            self.generation = gen

    def encode(self, visual: nn.Module, images: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn(images)``, computing only the rows not seen before."""
        self._check_generation(visual)
        flat = images.detach().contiguous().reshape(len(images), -1)
        keys = [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in flat]
        missing = [i for i, k in enumerate(keys) if k not in self.rows]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                new = fn(images[missing] if len(missing) < len(keys) else images)
            if len(self.rows) + len(missing) > self.max_entries:
                self.rows.clear()
            for i, row in zip(missing, new):
                self.rows[keys[i]] = row
            if len(missing) == len(keys):
                return new
        return torch.stack([self.rows[k] for k in keys])


def cache_of(visual: nn.Module) -> FeatureCache:
    """The cache attached to ``visual`` (created on first use)."""
    cache = getattr(visual, ATTR, None)
    if cache is None:
        cache = FeatureCache()
        object.__setattr__(visual, ATTR, cache)  # a plain attribute: not a submodule, not in the state dict
    return cache
