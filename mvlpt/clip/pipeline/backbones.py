"""Loading the frozen CLIP once and sharing it between the runs of a sweep."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from mvlpt.clip.backbone import BackboneConfig, create_backbone
from mvlpt.core.config import to_dict

from .data import Preprocess


@dataclass
class Backbone:
    """A loaded CLIP: model, tokenizer and its image preprocessing."""

    model: nn.Module
    tokenizer: Callable[..., Any]
    preprocess: Preprocess
    config: BackboneConfig


def load_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone of ``cfg`` (see :func:`mvlpt.clip.backbone.create_backbone`)."""
    model, tokenizer, pre = create_backbone(cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    return Backbone(model, tokenizer, Preprocess.from_any(pre), cfg)


class BackbonePool:
    """Backbones by config: the runs of a sweep share one loaded CLIP (the prompts are per run)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Backbone] = {}

    def get(self, cfg: BackboneConfig) -> Backbone:
        key = json.dumps(to_dict(cfg), sort_keys=True, default=str)
        if key not in self._loaded:
            self._loaded[key] = load_backbone(cfg)
        return self._loaded[key]
