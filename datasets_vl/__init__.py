"""Vision-language datasets for multitask prompt tuning of CLIP: image classification and VQA
tasks from Hugging Face ``datasets``, image folders, CoOp split files, the VQAv2 JSON layout,
``easy-vqa`` and scikit-learn ``digits``; few-shot sampling, prompt templates, CLIP transforms
and the batch format of the CLIP head. Start with :func:`load_task`."""

from .collate import collate_vl
from .dataset import VLDataset, VLSubset, VLTask
from .errors import ConfigError, DataError, DatasetNotFoundError
from .fewshot import (
    FewShotSplit,
    apply_few_shot,
    base_new_split,
    base_new_tasks,
    load_manifest,
    sample_few_shot,
    save_manifest,
    subset_classes,
    take_rows,
)
from .loader import load_task
from .registry import DATASETS, DatasetInfo, describe_layouts, lookup
from .robust import UnreadableTracker, absorb_skipped, decode_image, to_rgb
from .spec import DatasetSpec, make_spec
from .templates import DEFAULT_TEMPLATE, ENSEMBLE_TEMPLATES, VQA_TEMPLATE, format_prompt, templates_for
from .transforms import Preprocess, ToRGB, build_transforms, preprocess_cfg, transforms_for_model
from .vqa import best_label, build_vocab, normalize_answer, soft_scores, vqa_accuracy

__all__ = [
    "DATASETS", "DEFAULT_TEMPLATE", "ENSEMBLE_TEMPLATES", "VQA_TEMPLATE", "ConfigError", "DataError", "DatasetInfo",
    "DatasetNotFoundError", "DatasetSpec", "FewShotSplit", "Preprocess", "ToRGB", "UnreadableTracker", "VLDataset", "VLSubset",
    "VLTask", "absorb_skipped", "apply_few_shot", "base_new_split", "base_new_tasks", "best_label", "build_transforms",
    "build_vocab", "collate_vl", "decode_image", "describe_layouts", "format_prompt", "load_manifest", "load_task",
    "lookup", "make_spec", "normalize_answer", "preprocess_cfg", "sample_few_shot", "save_manifest", "soft_scores",
    "subset_classes", "take_rows", "templates_for", "to_rgb", "transforms_for_model", "vqa_accuracy",
]
