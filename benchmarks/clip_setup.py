"""Models, tasks and batches of the CLIP benchmark (see ``clip_train_throughput.py``).

Tasks mirror CoOp's 11 datasets (class counts below, 2,191 classes together); class names are
seeded synthetic names of 1-6 single-token words (real names have the same lengths in tokens, and
only the token count matters for speed). Images are random tensors already on the device, so the
figures measure the training step, not image decoding.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import torch
from torch import nn

#: CoOp's 11 datasets and their class counts (2,191 in all)
COOP_TASKS: list[tuple[str, int]] = [
    ("imagenet", 1000), ("caltech101", 100), ("oxford_pets", 37), ("stanford_cars", 196), ("oxford_flowers", 102),
    ("food101", 101), ("fgvc_aircraft", 100), ("sun397", 397), ("dtd", 47), ("eurosat", 10), ("ucf101", 101),
]
#: word counts of the synthetic class names and their probabilities
NAME_WORDS = [(1, 0.40), (2, 0.35), (3, 0.15), (4, 0.06), (5, 0.03), (6, 0.01)]
SHOTS = 16  # few-shot training sets: n_k = 16 × classes, which sets the proportional sampling rates

#: prompt settings of the three methods (the project's configs/clip/mvlpt_*.yaml)
METHODS: dict[str, dict[str, Any]] = {
    "mcoop": {"method": "coop", "text": 16, "visual": 0},
    "mvpt": {"method": "vpt", "text": 0, "visual": 16},
    "mupt": {"method": "upt", "text": 4, "visual": 4},
}

#: model and run sizes. ``small`` (CPU) keeps ViT-B/16's text:image cost balance at batch 32 (the union's class
#: prompts cost ~12x the images' tower) with classes / 16 and both towers shrunk alike
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"model": {"embed_dim": 32, "image_size": 32, "patch_size": 16, "width": 32, "layers": 2, "text_width": 32,
                       "text_layers": 1, "heads": 2}, "class_scale": 1 / 100, "batch_size": 4, "warmup": 0, "repeats": 1,
             "steps_per_round": 1},
    "small": {"model": {"embed_dim": 64, "image_size": 80, "patch_size": 16, "width": 64, "layers": 2,
                        "text_width": 64, "text_layers": 2, "heads": 2}, "class_scale": 1 / 16, "batch_size": 32,
              "warmup": 1, "repeats": 5, "steps_per_round": 4},
    "real": {"model": "ViT-B-16", "class_scale": 1.0, "batch_size": 32, "warmup": 2, "repeats": 5, "steps_per_round": 8},
}


def task_sizes(scale: float) -> list[tuple[str, int]]:
    return [(n, max(2, round(c * scale))) for n, c in COOP_TASKS]


def class_names(tokenizer: Any, n: int, rng: random.Random) -> list[str]:
    """``n`` distinct names of 1-6 words, each word one BPE token of CLIP's vocabulary."""
    vocab = sorted(w[:-4] for w in tokenizer.encoder if w.endswith("</w>") and w[:-4].isalpha() and 4 <= len(w) - 4 <= 9)
    counts, weights = zip(*NAME_WORDS)
    names: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        name = " ".join(rng.choice(vocab) for _ in range(rng.choices(counts, weights)[0]))
        if name not in names:
            names.add(name)
            out.append(name)
    return out


def build_tasks(tokenizer: Any, sizes: list[tuple[str, int]], seed: int) -> list[Any]:
    from mvlpt.clip import TaskInfo

    rng = random.Random(seed)
    return [TaskInfo(name, "classification", class_names(tokenizer, c, rng)) for name, c in sizes]


def build_backbone(size: dict[str, Any], seed: int) -> tuple[nn.Module, Any]:
    """Frozen fp32 CLIP with random weights (``ViT-B-16`` for ``real``) and its tokenizer."""
    from mvlpt.clip import BackboneConfig, create_backbone, tiny_clip_config

    if isinstance(size["model"], str):  # an open_clip architecture: random weights from the global RNG
        torch.manual_seed(seed)
        model, tok, _, _ = create_backbone(BackboneConfig(name=size["model"], pretrained=None))
        return model, tok
    cfg = tiny_clip_config(context_length=77, **size["model"])
    model, tok, _, _ = create_backbone(cfg, seed=seed)
    return model, tok


def stratified_tasks(probs: list[float], n: int) -> list[int]:
    """``n`` task ids at the quantiles ``(i + ½)/n`` of the mixing distribution (a low-variance sample)."""
    out, cum = [], 0.0
    edges = []
    for p in probs:
        cum += p
        edges.append(cum)
    for i in range(n):
        q = (i + 0.5) / n
        out.append(next(k for k, e in enumerate(edges) if q <= e + 1e-12))
    return out


def make_batches(tasks: list[Any], probs: list[float], n: int, batch_size: int, image_size: int, grouped: bool,
                 seed: int) -> list[dict[str, Any]]:
    """``n`` batches: mixed (each sample's task drawn from ``probs``) or task-grouped (one task per batch,
    tasks at the quantiles of ``probs``). Keys of the CLIP head plus ``global_labels`` for the reference."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([len(t.classnames) for t in tasks])
    offsets = torch.cumsum(sizes, 0) - sizes
    order = stratified_tasks(probs, n) if grouped else None
    batches = []
    for b in range(n):
        if grouped:
            tids = torch.full((batch_size,), order[b], dtype=torch.long)
        else:
            tids = torch.multinomial(torch.tensor(probs), batch_size, replacement=True, generator=g)
        labels = (torch.rand(batch_size, generator=g) * sizes[tids]).long()
        batches.append({
            "images": torch.randn(batch_size, 3, image_size, image_size, generator=g),
            "labels": labels, "task_ids": tids, "indices": torch.arange(b * batch_size, (b + 1) * batch_size),
            "questions": [None] * batch_size, "global_labels": offsets[tids] + labels,
        })
    return batches


def build_ours(backbone: nn.Module, tokenizer: Any, tasks: list[Any], method: dict[str, Any], stage: str) -> nn.Module:
    """The library's :class:`mvlpt.clip.CLIPTaskModel` (decomposed per-task prompts in the source stage)."""
    from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel
    from mvlpt.core.stages import PromptConfig

    cfg = CLIPPromptConfig(method=method["method"], text=PromptConfig(length=method["text"] or 16),
                           visual=PromptConfig(length=method["visual"] or 16), vpt_deep=True,
                           class_token_position="end")
    torch.manual_seed(1)
    return CLIPTaskModel(backbone, tokenizer, tasks, cfg, stage)


def build_reference(ref_backbone: nn.Module, tokenizer: Any, tasks: list[Any], method: dict[str, Any],
                    dtype: torch.dtype) -> nn.Module:
    from clip_reference import ReferenceCLIP

    names = [c for t in tasks for c in t.classnames]
    torch.manual_seed(1)
    return ReferenceCLIP(ref_backbone, tokenizer, names, [len(t.classnames) for t in tasks], method["text"],
                         method["visual"], dtype)


def reference_backbone(backbone: nn.Module) -> nn.Module:
    """A separate copy of the fp32 backbone for the reference (which casts its weights in place)."""
    return copy.deepcopy(backbone)
