"""Sharing one frozen CLIP between the runs of a sweep (built by :func:`mvlpt.clip.backbone.create_backbone`)."""

from __future__ import annotations

import json

from mvlpt.clip.backbone import Backbone, BackboneConfig, create_backbone
from mvlpt.core.config import to_dict


class BackbonePool:
    """Backbones by config: the runs of a sweep share one loaded CLIP (the prompts are per run)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Backbone] = {}

    def get(self, cfg: BackboneConfig) -> Backbone:
        key = json.dumps(to_dict(cfg), sort_keys=True, default=str)
        if key not in self._loaded:
            self._loaded[key] = create_backbone(cfg)
        return self._loaded[key]
