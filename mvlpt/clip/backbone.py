"""The frozen CLIP backbone: an open_clip model, its tokenizer and its preprocessing settings.

Three ways to name a backbone (:class:`BackboneConfig`):

* an open_clip model name and pretrained tag (``ViT-B-16`` / ``openai``,
  ``ViT-B-32`` / ``laion2b_s34b_b79k``, ``hf-hub:...``, ``local-dir:...``);
* an open_clip model-config JSON (``model_config``) plus a local weights file (``checkpoint``);
* ``tiny-clip``: the miniature CLIP shipped in :mod:`mvlpt.clip.weights`.

Every parameter of the returned model is frozen (``requires_grad=False``) and the model is in eval mode.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import torch
from torch import nn

from mvlpt.core.errors import CheckpointError, ConfigError

#: the miniature CLIP shipped with the package (see :mod:`mvlpt.clip.weights`)
TINY_CLIP = "tiny-clip"

Tokenizer = Callable[..., torch.Tensor]


@dataclass
class BackboneConfig:
    """Which frozen CLIP to load.

    Attributes:
        name: open_clip model name (``ViT-B-16``, ``hf-hub:org/repo``, ``local-dir:/path``) or ``tiny-clip``.
            With ``model_config`` set it only labels the model.
        pretrained: open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``) or a weights file;
            ``null`` = random weights (tests) unless ``checkpoint`` is set.
        model_config: an open_clip model config for custom / tiny models: a JSON file path, or
            the config itself as a mapping (``embed_dim``, ``vision_cfg``, ``text_cfg``; or a
            ``model_cfg`` key holding them).
        checkpoint: local weights file loaded with open_clip's loader (safetensors, or an
            open_clip ``.pt``/``.bin`` read with ``weights_only=True``).
        cache_dir: download cache of open_clip / Hugging Face.
        precision: dtype of the weights. Training keeps ``fp32`` weights and uses autocast.
    """

    name: str = "ViT-B-16"
    pretrained: str | None = "openai"
    model_config: str | dict[str, Any] | None = None
    checkpoint: str | None = None
    cache_dir: str | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("backbone.name must not be empty")

    def check_files(self) -> None:
        """The local files named exist (checked when loading, not when a config is read)."""
        if isinstance(self.model_config, str) and not Path(self.model_config).is_file():
            raise ConfigError(f"backbone.model_config: no such file {self.model_config!r} (expected an open_clip model-config JSON)")
        if self.checkpoint is not None and not Path(self.checkpoint).exists():
            raise ConfigError(f"backbone.checkpoint: no such file {self.checkpoint!r} (expected a safetensors or open_clip weights file)")


def tiny_clip_config(
    embed_dim: int = 64,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 2,
    text_width: int = 64,
    text_layers: int = 2,
    heads: int = 2,
    context_length: int = 32,
) -> dict[str, Any]:
    """A small ViT CLIP model config (open_clip format) for tests: random weights, CPU-fast."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "patch_size": patch_size, "width": width, "layers": layers,
                       "head_width": width // heads},
        "text_cfg": {"context_length": context_length, "vocab_size": 49408, "width": text_width,
                     "heads": heads, "layers": text_layers},
    }


def freeze(model: nn.Module) -> nn.Module:
    """Freeze every parameter and switch to eval mode (in place)."""
    model.requires_grad_(False)
    return model.eval()


def _read_model_config(path: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(path, Mapping):
        data, path = dict(path), "(mapping)"
    else:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"backbone.model_config {path}: not a readable JSON file ({e})") from None
    cfg = data.get("model_cfg", data)
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ConfigError(f"backbone.model_config {path}: missing {missing}; expected an open_clip model config "
                          "with embed_dim, vision_cfg and text_cfg")
    return cfg


def _cast(model: nn.Module, precision: str) -> nn.Module:
    if precision in ("bf16", "fp16"):
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, torch.bfloat16 if precision == "bf16" else torch.float16)
    return model


def model_from_config(model_cfg: Mapping[str, Any], precision: str = "fp32", seed: int | None = 0) -> nn.Module:
    """An open_clip ``CLIP`` (or ``CustomTextCLIP``) with random weights from a config dict.

    Args:
        model_cfg: open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...).
        precision: weight dtype.
        seed: seed of the random initialisation (``None`` = the global RNG).
    """
    from open_clip.model import CLIP, CustomTextCLIP, get_cast_dtype

    cfg = copy.deepcopy(dict(model_cfg))
    custom = bool(cfg.pop("custom_text", False)) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        raise ConfigError("CoCa model configs (multimodal_cfg) are not supported as prompt-tuning backbones")
    cls = CustomTextCLIP if custom else CLIP
    rng = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        model = cls(**cfg, cast_dtype=get_cast_dtype(precision))
    return _cast(model, precision)


def _tokenizer_for_config(model_cfg: Mapping[str, Any], cache_dir: str | None) -> Tokenizer:
    text = model_cfg.get("text_cfg", {})
    ctx = int(text.get("context_length", 77))
    if text.get("hf_tokenizer_name"):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(text["hf_tokenizer_name"], context_length=ctx, cache_dir=cache_dir,
                           **(text.get("tokenizer_kwargs") or {}))
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=ctx)


def _preprocess_for_config(model: nn.Module) -> dict[str, Any]:
    from dataclasses import asdict

    from open_clip.model import get_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    cfg = asdict(PreprocessCfg())
    size = getattr(model.visual, "image_size", None)
    if size is not None:
        cfg["size"] = size
    cfg.update(get_model_preprocess_cfg(model))
    return cfg


def load_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a full CLIP weights file with open_clip's loader; errors name the expected model."""
    import open_clip

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"backbone checkpoint {path} not found")
    try:
        open_clip.load_checkpoint(model, str(path), strict=True)
    except RuntimeError as e:
        msg = str(e).split("\n")
        raise CheckpointError(
            f"backbone checkpoint {path} does not fit {what}: {' '.join(m.strip() for m in msg[:6])} "
            "(a checkpoint for another architecture or size?)"
        ) from None


def create_backbone(cfg: BackboneConfig) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """Build the frozen CLIP of ``cfg``.

    Returns:
        ``(clip_model, tokenizer, preprocess_cfg)``: the frozen open_clip model (eval mode),
        its tokenizer (``tokenizer(list[str]) -> LongTensor``) and open_clip's preprocessing
        settings (``size``, ``mean``, ``std``, ``interpolation``, ``resize_mode``).
    """
    import open_clip

    cfg.validate()
    cfg.check_files()
    model_config = cfg.model_config
    checkpoint = cfg.checkpoint
    if cfg.name == TINY_CLIP and model_config is None:
        from .weights import WEIGHTS_FILE, weights_dir

        root = Path(checkpoint) if checkpoint and Path(checkpoint).is_dir() else weights_dir(TINY_CLIP)
        model_config = str(root / f"{TINY_CLIP}.json")
        checkpoint = str(root / WEIGHTS_FILE) if not checkpoint or Path(checkpoint).is_dir() else checkpoint
        if not Path(model_config).is_file():
            raise CheckpointError(f"backbone tiny-clip: {model_config} not found; export the model with "
                                  "`python -m mvlpt.clip.pretrain` or set backbone.model_config/checkpoint")
    if model_config is not None:
        mcfg = _read_model_config(model_config)
        model = model_from_config(mcfg, precision="fp32")
        tokenizer = _tokenizer_for_config(mcfg, cfg.cache_dir)
        if checkpoint:
            load_weights(model, checkpoint, f"the model config {model_config if isinstance(model_config, str) else cfg.name}")
        _cast(model, cfg.precision)
    else:
        try:
            model = open_clip.create_model(cfg.name, pretrained=cfg.pretrained if not checkpoint else None,
                                           precision=cfg.precision, cache_dir=cfg.cache_dir)
        except RuntimeError as e:
            raise CheckpointError(f"backbone {cfg.name!r} (pretrained={cfg.pretrained!r}) could not be created: {e}") from None
        if checkpoint:
            load_weights(model, checkpoint, f"open_clip model {cfg.name}")
        tokenizer = open_clip.get_tokenizer(cfg.name, cache_dir=cfg.cache_dir)
    freeze(model)
    model.mvlpt_name = cfg.name  # a label for error messages
    return model, tokenizer, _preprocess_for_config(model)


def create_backbone_from_dict(model_cfg: Mapping[str, Any], seed: int = 0
                              ) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """Like :func:`create_backbone` for a model-config dict (e.g. :func:`tiny_clip_config`), random weights."""
    model = freeze(model_from_config(model_cfg, seed=seed))
    return model, _tokenizer_for_config(model_cfg, None), _preprocess_for_config(model)
