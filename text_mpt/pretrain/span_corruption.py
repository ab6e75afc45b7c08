"""T5 span corruption (Raffel et al. 2020): drop ~15% of the tokens in spans of mean length 3,
replace each dropped span by a unique sentinel in the input, and make the target the sentinels
followed by the spans they replace. Deterministic given a ``random.Random``."""

from __future__ import annotations

import random
from typing import Sequence


def _random_segmentation(num_items: int, num_segments: int, rng: random.Random) -> list[int]:
    """Split ``num_items`` into ``num_segments`` positive lengths, uniformly at random."""
    cuts = sorted(rng.sample(range(1, num_items), num_segments - 1)) if num_segments > 1 else []
    bounds = [0, *cuts, num_items]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def random_spans_noise_mask(length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                            rng: random.Random | None = None) -> list[bool]:
    """T5's noise mask: ``round(length × density)`` noise tokens in ``round(noise / mean_span)`` spans,
    interleaved with non-noise spans, always starting with non-noise (True = noise)."""
    rng = rng or random.Random(0)
    if length < 2:
        return [False] * length
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    num_spans = min(num_spans, num_noise, length - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    mask: list[bool] = []
    for keep, noise in zip(keep_lengths, noise_lengths):
        mask += [False] * keep + [True] * noise
    return mask


def span_corrupt(tokens: Sequence[int], sentinels: Sequence[int], eos_id: int, noise_density: float = 0.15,
                 mean_noise_span_length: float = 3.0, rng: random.Random | None = None) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one token sequence (no EOS in ``tokens``; both outputs end with ``eos_id``).

    ``sentinels[i]`` is the id of ``<extra_id_i>``; the i-th noise span becomes ``sentinels[i]``.
    """
    mask = random_spans_noise_mask(len(tokens), noise_density, mean_noise_span_length, rng)
    inputs: list[int] = []
    labels: list[int] = []
    span = -1
    for i, (tok, noisy) in enumerate(zip(tokens, mask)):
        if noisy:
            if i == 0 or not mask[i - 1]:
                span += 1
                if span >= len(sentinels):
                    raise ValueError(f"{span + 1} noise spans but only {len(sentinels)} sentinel tokens; "
                                     "use shorter sequences or more extra_ids")
                inputs.append(sentinels[span])
                labels.append(sentinels[span])
            labels.append(tok)
        else:
            inputs.append(tok)
    return inputs + [eos_id], labels + [eos_id]
