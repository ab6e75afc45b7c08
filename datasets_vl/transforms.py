"""Image transforms: CLIP preprocessing from open_clip (size, mean, std, interpolation, resize
mode) for evaluation, and a switchable CoOp-style training augmentation (random resized crop +
horizontal flip). Every transform first converts grey / palette / RGBA images to RGB.

:class:`Preprocess` is the one record of a CLIP's preprocessing settings: the CLIP factory
(:func:`mvlpt.clip.backbone.create_backbone`) returns it, the pipeline builds its transforms from it
and the tiny-CLIP pretraining normalises its image tensors with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import open_clip
import torch
from open_clip.transform import PreprocessCfg, merge_preprocess_dict
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .dataset import mark_deterministic
from .errors import ConfigError
from .robust import to_rgb

Transform = Callable[[Any], Any]


class ToRGB:
    """PIL image of any mode → RGB (grey replicated to 3 channels, alpha on white)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return to_rgb(img)

    def __repr__(self) -> str:
        return "ToRGB()"


def _interp(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name.lower())
    except ValueError:
        raise ConfigError(f"interpolation {name!r} unknown; use bicubic, bilinear or nearest") from None


def build_transforms(
    image_size: int = 224,
    mean: Sequence[float] = open_clip.OPENAI_DATASET_MEAN,
    std: Sequence[float] = open_clip.OPENAI_DATASET_STD,
    interpolation: str = "bicubic",
    train_augment: bool = True,
    *,
    resize_mode: str = "shortest",
    crop_scale: tuple[float, float] = (0.08, 1.0),
    hflip: bool = True,
) -> tuple[Transform, Transform]:
    """``(train_transform, eval_transform)`` → FloatTensor (3, S, S), normalised.

    Eval = open_clip's own CLIP preprocessing (resize + centre crop). Train = random resized crop
    (``crop_scale``, CoOp's default (0.08, 1)) and, if ``hflip``, a random horizontal flip; with
    ``train_augment=False`` the train transform is the eval transform. Use ``hflip=False`` for
    tasks where a mirror image changes the class (digits, text)."""
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, found {image_size}")
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"mean and std need 3 values (RGB), found {mean} and {std}")
    _interp(interpolation)
    eval_tf = mark_deterministic(T.Compose([ToRGB(), open_clip.image_transform(
        image_size, is_train=False, mean=mean, std=std, interpolation=interpolation, resize_mode=resize_mode)]))
    if not train_augment:
        return eval_tf, eval_tf
    steps: list[Any] = [ToRGB(), T.RandomResizedCrop(image_size, scale=crop_scale, interpolation=_interp(interpolation))]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps), eval_tf


@dataclass
class Preprocess:
    """CLIP image preprocessing settings (open_clip's ``PreprocessCfg`` fields that the transforms read).

    Attributes:
        size: square image side in pixels.
        mean, std: per-channel (RGB) normalisation.
        interpolation: ``bicubic``, ``bilinear`` or ``nearest``.
        resize_mode: open_clip's ``shortest`` (resize + centre crop), ``longest`` or ``squash``.
    """

    size: int = 224
    mean: tuple[float, ...] = tuple(open_clip.OPENAI_DATASET_MEAN)
    std: tuple[float, ...] = tuple(open_clip.OPENAI_DATASET_STD)
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_any(cls, p: Any) -> "Preprocess":
        """From open_clip's preprocess dict / ``PreprocessCfg`` / an object with those attributes
        (``size`` or ``image_size``; a ``(h, w)`` size gives ``h``); missing fields take the defaults."""
        if p is None:
            return cls()
        if isinstance(p, cls):
            return p
        get = p.get if isinstance(p, Mapping) else (lambda k, d=None: getattr(p, k, d))
        size = get("size", None) or get("image_size", None) or 224
        size = size[0] if isinstance(size, (tuple, list)) else size
        d = cls()
        return cls(int(size), tuple(get("mean", None) or d.mean), tuple(get("std", None) or d.std),
                   str(get("interpolation", None) or d.interpolation), str(get("resize_mode", None) or d.resize_mode))

    def transforms(self, train_augment: bool = True, **kwargs: Any) -> tuple[Transform, Transform]:
        """``(train_transform, eval_transform)`` of these settings (:func:`build_transforms`; ``kwargs``:
        ``crop_scale``, ``hflip``)."""
        return build_transforms(self.size, self.mean, self.std, self.interpolation, train_augment,
                                resize_mode=self.resize_mode, **kwargs)

    def eval_transform(self) -> Transform:
        """PIL image → normalised FloatTensor (3, size, size): open_clip's evaluation preprocessing."""
        return self.transforms(train_augment=False)[1]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Already resized ``uint8`` images ``(B, 3, H, W)`` → float, scaled to [0, 1] and normalised
        with ``mean`` / ``std`` (what :meth:`eval_transform` does after its resize and crop)."""
        x = images.float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


def preprocess_cfg(model: Any = None, model_name: str | None = None, pretrained: str | None = None) -> Preprocess:
    """CLIP preprocessing settings from an open_clip model object, or from a model name (+ optional
    pretrained tag, whose mean/std/interpolation are read from open_clip's tables, nothing downloaded)."""
    cfg: dict[str, Any] = vars(PreprocessCfg()).copy()
    if model is not None:
        cfg = merge_preprocess_dict(cfg, open_clip.get_model_preprocess_cfg(model))
    elif model_name is not None:
        mcfg = open_clip.get_model_config(model_name)
        if mcfg is None:
            raise ConfigError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
        cfg["size"] = mcfg.get("vision_cfg", {}).get("image_size", cfg["size"])
        cfg = merge_preprocess_dict(cfg, mcfg.get("preprocess_cfg", {}))
        if pretrained:
            cfg = merge_preprocess_dict(cfg, open_clip.get_pretrained_cfg(model_name, pretrained) or {})
    size = cfg["size"]
    size = size[0] if isinstance(size, (tuple, list)) else size
    return Preprocess(int(size), tuple(cfg["mean"]), tuple(cfg["std"]), str(cfg["interpolation"]),
                      str(cfg.get("resize_mode", "shortest")))


def transforms_for_model(model: Any = None, model_name: str | None = None, pretrained: str | None = None,
                         train_augment: bool = True, **kwargs: Any) -> tuple[Transform, Transform]:
    """:func:`build_transforms` with the settings of an open_clip model (object or name)."""
    return preprocess_cfg(model, model_name, pretrained).transforms(train_augment, **kwargs)
