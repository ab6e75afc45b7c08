"""Helpers shared by the CLIP tests: hand-made batches and tiny run configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mvlpt.clip import tiny_clip_config
from mvlpt.clip.pipeline.run_config import merge


def make_batch(task_ids, labels, seed: int = 0) -> dict:
    """A classification batch of random 32 px images."""
    n = len(task_ids)
    return {"images": torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)),
            "labels": torch.tensor(labels), "task_ids": torch.tensor(task_ids), "indices": torch.arange(n),
            "questions": [None] * n}


def write_tiny_backbone(path: Path, **kw) -> str:
    """A 16 px tiny CLIP model config (JSON) for pipeline runs; returns its path."""
    path.write_text(json.dumps(tiny_clip_config(image_size=16, patch_size=8, width=32, text_width=32,
                                                embed_dim=32, context_length=24, **kw)))
    return str(path)


def tiny_run(root: Path, **sections: Any) -> dict[str, Any]:
    """A CPU run config on the 16 px tiny CLIP (written to ``root/tiny.json``), ``sections`` merged over it."""
    base = {"backbone": {"name": "tiny-random", "pretrained": None, "model_config": write_tiny_backbone(root / "tiny.json")},
            "train": {"device": "cpu", "precision": "fp32", "progress": False, "tensorboard": False},
            "data": {"train_augment": False}, "threads": 1}
    return merge(base, sections)
