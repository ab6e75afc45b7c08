"""Shipped backbone weights and their loader.

``tiny-clip/`` holds a miniature CLIP pretrained by :mod:`mvlpt.clip.pretrain` (see its README):
``tiny-clip.json`` (open_clip model config), ``open_clip_model.safetensors`` (fp16 weights) and
``metadata.json`` (data, steps, commit, zero-shot accuracies). :func:`load_tiny_clip` builds it
offline; :func:`zero_shot_accuracy` is the evaluation used to record those accuracies.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from mvlpt.core.checkpoint import load_tensors
from mvlpt.core.errors import CheckpointError

TINY_CLIP = "tiny-clip"
WEIGHTS_FILE = "open_clip_model.safetensors"
METADATA_FILE = "metadata.json"


def weights_dir(name: str = TINY_CLIP) -> Path:
    """Directory of a shipped model inside the installed package."""
    return Path(str(resources.files(__package__).joinpath(name)))


def build_clip(model_cfg: dict[str, Any]) -> nn.Module:
    """An open_clip ``CLIP`` from a model config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...)."""
    from open_clip.model import CLIP

    cfg = dict(model_cfg)
    return CLIP(embed_dim=cfg.pop("embed_dim"), vision_cfg=cfg.pop("vision_cfg"), text_cfg=cfg.pop("text_cfg"), **cfg)


def make_tokenizer(context_length: int) -> Callable[..., Tensor]:
    """The standard CLIP BPE tokenizer (49,408 tokens; its vocabulary ships with open_clip)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def make_preprocess(image_size: int) -> Callable[[Any], Tensor]:
    """open_clip's evaluation transform (resize, centre crop, RGB, CLIP mean/std)."""
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.transform import image_transform

    return image_transform(image_size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)


def read_metadata(name: str = TINY_CLIP, directory: str | Path | None = None) -> dict[str, Any]:
    """The metadata JSON of a shipped (or exported) model."""
    path = Path(directory) if directory is not None else weights_dir(name)
    return json.loads((path / METADATA_FILE).read_text())


def load_tiny_clip(directory: str | Path | None = None, device: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, Callable[..., Tensor], Callable[[Any], Tensor]]:
    """``(model, tokenizer, preprocess)`` of the shipped tiny CLIP (fp32, eval mode), offline.

    Args:
        directory: an exported model directory (default: the copy inside the package).
        device: where to put the model.
    """
    path = Path(directory) if directory is not None else weights_dir(TINY_CLIP)
    cfg_file, weights = path / f"{TINY_CLIP}.json", path / WEIGHTS_FILE
    if not cfg_file.is_file() or not weights.is_file():
        raise CheckpointError(f"no tiny-clip model in {path}: expected {cfg_file.name} and {weights.name} "
                              "(export one with `python -m mvlpt.clip.pretrain --config configs/pretrain/tiny_clip.yaml`)")
    cfg = json.loads(cfg_file.read_text())
    model = build_clip(cfg)
    state = {k: v.float() for k, v in load_tensors(weights).items()}
    own = model.state_dict()
    if set(own) != set(state):
        raise CheckpointError(f"{weights}: keys do not match {cfg_file.name}: missing {sorted(set(own) - set(state))[:5]}, "
                              f"unexpected {sorted(set(state) - set(own))[:5]}")
    model.load_state_dict(state)
    model.to(device).eval()
    return model, make_tokenizer(cfg["text_cfg"]["context_length"]), make_preprocess(cfg["vision_cfg"]["image_size"])


@torch.no_grad()
def class_text_features(model: nn.Module, tokenizer: Callable[..., Tensor], class_names: Sequence[str],
                        templates: Sequence[str]) -> Tensor:
    """``(C, D)`` unit-norm class embeddings: the normalised mean over templates of each class's prompts."""
    device = next(model.parameters()).device
    texts = [t.format(c) for c in class_names for t in templates]
    feats = model.encode_text(tokenizer(texts).to(device), normalize=True).float()
    feats = feats.view(len(class_names), len(templates), -1).mean(1)
    return feats / feats.norm(dim=-1, keepdim=True)


@torch.no_grad()
def zero_shot_predict(model: nn.Module, images: Tensor, text_features: Tensor, batch_size: int = 256) -> Tensor:
    """Class predictions ``(N,)`` for normalised float images ``(N, 3, H, W)``."""
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(images), batch_size):
        f = model.encode_image(images[i:i + batch_size].to(device), normalize=True).float()
        preds.append((f @ text_features.T).argmax(-1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def zero_shot_accuracy(model: nn.Module, tokenizer: Callable[..., Tensor], images: Tensor, labels: Tensor,
                       class_names: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",)) -> float:
    """Zero-shot accuracy on normalised float ``images`` with the given prompt templates."""
    was_training = model.training
    model.eval()
    feats = class_text_features(model, tokenizer, class_names, templates)
    acc = float((zero_shot_predict(model, images, feats) == labels.cpu()).float().mean())
    model.train(was_training)
    return acc
