"""Image transforms: CLIP preprocessing from open_clip (size, mean, std, interpolation, resize
mode) for evaluation, and a switchable CoOp-style training augmentation (random resized crop +
horizontal flip). Every transform first converts grey / palette / RGBA images to RGB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import open_clip
from open_clip.transform import PreprocessCfg, merge_preprocess_dict
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

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
    eval_tf = T.Compose([ToRGB(), open_clip.image_transform(
        image_size, is_train=False, mean=mean, std=std, interpolation=interpolation, resize_mode=resize_mode)])
    if not train_augment:
        return eval_tf, eval_tf
    steps: list[Any] = [ToRGB(), T.RandomResizedCrop(image_size, scale=crop_scale, interpolation=_interp(interpolation))]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps), eval_tf


@dataclass
class PreprocessInfo:
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str


def preprocess_cfg(model: Any = None, model_name: str | None = None, pretrained: str | None = None) -> PreprocessInfo:
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
    return PreprocessInfo(int(size), tuple(cfg["mean"]), tuple(cfg["std"]), str(cfg["interpolation"]),
                          str(cfg.get("resize_mode", "shortest")))


def transforms_for_model(model: Any = None, model_name: str | None = None, pretrained: str | None = None,
                         train_augment: bool = True, **kwargs: Any) -> tuple[Transform, Transform]:
    """:func:`build_transforms` with the settings of an open_clip model (object or name)."""
    p = preprocess_cfg(model, model_name, pretrained)
    return build_transforms(p.image_size, p.mean, p.std, p.interpolation, train_augment,
                            resize_mode=p.resize_mode, **kwargs)
