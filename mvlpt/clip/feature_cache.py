"""A memo of prompt-free image features of a frozen image tower (CPU).

Without visual prompts (CoOp, the CoOp teacher of a source stage, evaluation of text-only
prompts) the image tower computes the same function of the same images at every step: a few-shot
run sees its handful of training images hundreds of times, and every run of a sweep evaluates the
same test images. :class:`FeatureCache` keys each image by a hash of its pixel bytes, so it is
exact for any input pipeline (an augmented image simply misses) and shared by every
:class:`~mvlpt.clip.vision_tower.VisionTower` view of one backbone (it lives on the ``visual``
module). It is used only when it cannot change a result: the tower is in eval mode, no gradient
can flow into it, and the input is on the CPU (on a GPU the forward is cheaper than the copy).
A change of the tower's weights (any in-place update bumps a tensor's version) empties it. Rows are
also keyed by the autocast state (a bf16 feature is not served to an fp32 forward).

A row does not depend on which rows were cached before it. CPU kernels may round a batch of one
differently from a larger batch (measured with tiny-clip: a 1-image forward differs from the same row
of a 128-image forward by ~1e-6), and a batch's missing rows depend on what earlier runs cached; so
missing rows are always computed in zero-padded chunks of :data:`CHUNK` rows (:func:`canonical_encode`),
and a feature is the same whatever ran before it in the process (a sweep's cell equals its standalone run).

:class:`BatchMemo` is the device-independent part: the features of the **last batch tensor** a
frozen tower encoded without prompts, keyed by that tensor's identity and version, the weights and
the autocast state. In a source stage the student and the CoOp teacher encode the same batch tensor
one after the other, so on any device (also where the pixel cache is off) the image tower runs once
per step for both; the pixel cache also skips re-hashing such a batch.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Callable

import torch
from torch import Tensor, nn

#: attribute of the ``visual`` module holding its cache
ATTR = "_mvlpt_feature_cache"
#: attribute of the ``visual`` module holding its last-batch memo
MEMO_ATTR = "_mvlpt_batch_memo"
#: rows per forward when the cache computes features (fastest of 16-256 for tiny-clip on one CPU thread)
CHUNK = 16


def weights_generation(module: nn.Module) -> tuple[int, ...]:
    """Identity and version of every parameter and buffer: changes with any in-place update or replacement."""
    return tuple(x for t in (*module.parameters(), *module.buffers()) for x in (id(t), t._version))


def autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    """Whether autocast is on for ``device_type`` and its dtype."""
    on = torch.is_autocast_enabled(device_type)
    return on, torch.get_autocast_dtype(device_type) if on else None


def frozen_input(visual: nn.Module, images: Tensor) -> bool:
    """Whether the prompt-free features are a fixed function of ``images``: eval mode (no dropout) and no
    gradient into the tower or the pixels."""
    if visual.training or images.requires_grad:
        return False
    return not (torch.is_grad_enabled() and any(p.requires_grad for p in visual.parameters()))


def canonical_encode(fn: Callable[[Tensor], Tensor], images: Tensor, chunk: int = CHUNK) -> Tensor:
    """``fn`` over ``images`` in chunks of exactly ``chunk`` rows (the last one zero-padded), so that each
    row's value depends on that row alone, not on how many rows were computed with it."""
    out = []
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        n = len(part)
        if n < chunk:
            part = torch.cat([part, part.new_zeros((chunk - n, *part.shape[1:]))])
        out.append(fn(part)[:n])
    return torch.cat(out)


class BatchMemo:
    """The prompt-free features of the last batch tensor a frozen tower encoded (any device)."""

    def __init__(self) -> None:
        self.ref: weakref.ref | None = None
        self.key: tuple | None = None
        self.value: Tensor | None = None
        self.hits = 0
        self.misses = 0

    def _key(self, visual: nn.Module, images: Tensor) -> tuple:
        return (images._version, tuple(images.shape), images.dtype, images.device,
                autocast_state(images.device.type), weights_generation(visual))

    def encode(self, visual: nn.Module, images: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn(images)`` (under ``no_grad``), or the features remembered for this very tensor (the last batch
        tensor, unchanged, under the same weights and autocast state). The key is computed once per call."""
        key = self._key(visual, images)
        if self.ref is not None and self.ref() is images and self.key == key:
            self.hits += 1
            return self.value
        self.misses += 1
        with torch.no_grad():
            value = fn(images).detach()
        self.ref, self.key, self.value = weakref.ref(images), key, value
        return value


def memo_of(visual: nn.Module) -> BatchMemo:
    """The last-batch memo attached to ``visual`` (created on first use)."""
    memo = getattr(visual, MEMO_ATTR, None)
    if memo is None:
        memo = BatchMemo()
        object.__setattr__(visual, MEMO_ATTR, memo)
    return memo


class FeatureCache:
    """Image bytes hash → feature row, for one frozen image tower, up to ``max_entries`` rows."""

    def __init__(self, max_entries: int = 200_000):
        self.max_entries = max_entries
        self.rows: dict[bytes, Tensor] = {}
        self.generation: tuple[int, ...] | None = None
        self.hits = 0
        self.misses = 0
        self._last: tuple[weakref.ref, int, list[bytes]] | None = None

    @staticmethod
    def usable(visual: nn.Module, images: Tensor) -> bool:
        """Whether caching cannot change the result: CPU input, eval mode, no gradient into the tower or pixels."""
        return images.device.type == "cpu" and frozen_input(visual, images)

    def _keys(self, images: Tensor) -> list[bytes]:
        """Row keys (autocast state + pixel hash); the last tensor's are remembered (not hashed again)."""
        last = self._last
        if last is not None and last[0]() is images and last[1] == images._version:
            return last[2]
        state = repr(autocast_state("cpu")).encode()
        flat = images.detach().contiguous().reshape(len(images), -1)
        keys = [state + hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in flat]
        self._last = (weakref.ref(images), images._version, keys)
        return keys

    def _check_generation(self, visual: nn.Module) -> None:
        gen = weights_generation(visual)
        if gen != self.generation:
            self.rows.clear()
            self.generation = gen

    def encode(self, visual: nn.Module, images: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn(images)``, computing only the rows not seen before (:func:`canonical_encode`)."""
        self._check_generation(visual)
        keys = self._keys(images)
        missing = [i for i, k in enumerate(keys) if k not in self.rows]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                new = canonical_encode(fn, images[missing] if len(missing) < len(keys) else images)
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
