"""The CLIP head's pretraining wing: contrastive image–text pretraining of the shipped ``tiny-clip``.

Nothing in the head's model layers (``mvlpt.clip.backbone``, the towers, the task models, ``zeroshot``,
the pipeline) imports this package; only the ``mvlpt pretrain`` command and ``python -m mvlpt.clip.pretrain``
do. The wing builds its CLIP with the head's factory (:func:`mvlpt.clip.backbone.create_backbone`), encodes
texts with the one trimmed text encoder (:class:`mvlpt.clip.text_tower.TextTower`) and scores zero-shot with
the one scorer (:mod:`mvlpt.clip.zeroshot`); shared tooling (the commit recorded in an export,
``export_dir``) lives in :mod:`mvlpt.core.export`.

* :mod:`~mvlpt.clip.pretrain.recipe` — the recipe config, the pretraining task model, the run and the export;
* :mod:`~mvlpt.clip.pretrain.data` — labelled images → image–caption pairs (templates, prefixes, cache),
  the fixed samples that need no shared data.

Command::

    python -m mvlpt.clip.pretrain --config configs/pretrain/tiny_clip.yaml [key=value ...]   # = mvlpt pretrain ...
    python -m mvlpt.clip.pretrain --config ... --export-only   # export the run's last checkpoint
"""

from __future__ import annotations

from .recipe import (PACKAGE_DIR, ZS_TEMPLATE, ClipDataConfig, ClipPretrainConfig, ClipPretrainModel, build_datasets,
                     build_model, data_root, export_clip, export_from_run, fixed_sample_accuracy, image_features,
                     load_split, main, prototype_accuracy, read_metadata, resolve_export_dir, run, trainable_clip,
                     zero_shot_report)

__all__ = [
    "PACKAGE_DIR", "ZS_TEMPLATE", "ClipDataConfig", "ClipPretrainConfig", "ClipPretrainModel", "build_datasets",
    "build_model", "data_root", "export_clip", "export_from_run", "fixed_sample_accuracy", "image_features",
    "load_split", "main", "prototype_accuracy", "read_metadata", "resolve_export_dir", "run", "trainable_clip",
    "zero_shot_report",
]
