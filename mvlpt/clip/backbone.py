"""The CLIP factory: :func:`create_backbone` builds every CLIP of the head — a frozen open_clip model,
its tokenizer, its preprocessing record and the config it came from (:class:`Backbone`).

What it builds from:

* a :class:`BackboneConfig` (what run configs hold): an open_clip model name and pretrained tag
  (``ViT-B-16`` / ``openai``, ``ViT-B-32`` / ``laion2b_s34b_b79k``, ``hf-hub:...``, ``local-dir:...``);
  an open_clip model-config JSON or mapping (``model_config``) plus a local weights file
  (``checkpoint``); or ``tiny-clip``;
* a model-config mapping (e.g. :func:`tiny_clip_config`): random weights from a seed (tests, benchmarks);
* the name ``tiny-clip``: the miniature CLIP whose files ship in the data folder
  ``mvlpt/clip/weights/tiny-clip/`` (found by its path; :func:`weights_dir`);
* a directory: an exported model (``<name>.json`` + ``open_clip_model.safetensors``, as the
  pretraining wing :mod:`mvlpt.clip.pretrain` writes them) or an open_clip folder (``open_clip_config.json``).

Every parameter of the returned model is frozen (``requires_grad=False``) and the model is in eval mode.
The preprocessing record is :class:`datasets_vl.Preprocess` (size, mean, std, interpolation, resize mode).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, NamedTuple

import torch
from torch import nn

from mvlpt.core.errors import CheckpointError, ConfigError
from mvlpt.core.runtime import freeze

if TYPE_CHECKING:  # datasets_vl imports open_clip: loaded with the model, not with a config
    from datasets_vl.transforms import Preprocess

#: the miniature CLIP shipped with the package (files in ``mvlpt/clip/weights/tiny-clip/``)
TINY_CLIP = "tiny-clip"
#: the data folder of shipped models (a folder of files: the model layer imports nothing from it)
WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"
#: the layout of an exported model directory: ``<name>.json`` (open_clip model config), the weights, the metadata
WEIGHTS_FILE = "open_clip_model.safetensors"
METADATA_FILE = "metadata.json"

Tokenizer = Callable[..., torch.Tensor]


def weights_dir(name: str = TINY_CLIP) -> Path:
    """Directory of a model shipped inside the package (``mvlpt/clip/weights/<name>``)."""
    return WEIGHTS_ROOT / name


def tiny_clip_files(root: Path) -> tuple[Path, Path]:
    """``(model-config JSON, weights file)`` of a tiny-clip folder (shipped, or exported by a pretraining run)."""
    return root / f"{TINY_CLIP}.json", root / WEIGHTS_FILE


class Backbone(NamedTuple):
    """A built CLIP: ``model, tokenizer, preprocess, config = create_backbone(...)``."""

    model: nn.Module  #: frozen open_clip model, eval mode
    tokenizer: Tokenizer  #: ``tokenizer(list[str]) -> LongTensor``
    preprocess: Preprocess  #: image preprocessing settings of the model
    config: "BackboneConfig"  #: what it was built from


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


def _model_from_config(model_cfg: Mapping[str, Any], precision: str = "fp32", seed: int | None = 0) -> nn.Module:
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


def _model_dir_files(root: Path, name: str) -> tuple[Path, Path]:
    """``(model-config JSON, weights file)`` of an exported model directory: ``<name>.json`` (else its
    one JSON file besides ``metadata.json``) and ``open_clip_model.safetensors``."""
    cfg_file = root / f"{name}.json"
    if not cfg_file.is_file():
        found = sorted(p for p in root.glob("*.json") if p.name != METADATA_FILE)
        if len(found) == 1:
            cfg_file = found[0]
    return cfg_file, root / WEIGHTS_FILE


def _from_spec(spec: BackboneConfig | Mapping[str, Any] | str | os.PathLike) -> BackboneConfig:
    """The :class:`BackboneConfig` that ``spec`` stands for (a config, a mapping, ``tiny-clip``, a directory, a name)."""
    if isinstance(spec, BackboneConfig):
        return spec
    if isinstance(spec, Mapping):
        return BackboneConfig(name="model_config", pretrained=None, model_config=dict(spec))
    text = os.fspath(spec)
    if text == TINY_CLIP:
        return BackboneConfig(name=TINY_CLIP, pretrained=None)
    path = Path(text)
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return BackboneConfig(name=f"local-dir:{path}", pretrained=None)
        cfg_file, weights = _model_dir_files(path, path.name)
        if not cfg_file.is_file() or not weights.is_file():
            raise CheckpointError(f"no exported CLIP in {path}: expected <name>.json and {WEIGHTS_FILE} "
                                  "(export one with `python -m mvlpt.clip.pretrain --config configs/pretrain/tiny_clip.yaml`)")
        return BackboneConfig(name=cfg_file.stem, pretrained=None, model_config=str(cfg_file), checkpoint=str(weights))
    return BackboneConfig(name=text)


def create_backbone(spec: BackboneConfig | Mapping[str, Any] | str | os.PathLike, *, seed: int | None = 0) -> Backbone:
    """Build the frozen CLIP of ``spec`` (see the module docstring).

    Args:
        spec: a :class:`BackboneConfig`; a model-config mapping (random weights); ``"tiny-clip"``; a
            model directory; or an open_clip model name (with :class:`BackboneConfig`'s defaults).
        seed: seed of the random initialisation of models built from a config (``None`` = the global
            RNG); loaded weights replace it.

    Returns:
        a :class:`Backbone` ``(model, tokenizer, preprocess, config)``: the frozen open_clip model (eval
        mode), its tokenizer (``tokenizer(list[str]) -> LongTensor``), its :class:`~datasets_vl.Preprocess`
        record and the :class:`BackboneConfig` it was built from.
    """
    import open_clip

    from datasets_vl.transforms import preprocess_cfg

    label = not isinstance(spec, Mapping)
    cfg = _from_spec(spec)
    cfg.validate()
    cfg.check_files()
    model_config = cfg.model_config
    checkpoint = cfg.checkpoint
    if cfg.name == TINY_CLIP and model_config is None:
        root = Path(checkpoint) if checkpoint and Path(checkpoint).is_dir() else weights_dir(TINY_CLIP)
        cfg_file, weights = tiny_clip_files(root)
        model_config = str(cfg_file)
        checkpoint = str(weights) if not checkpoint or Path(checkpoint).is_dir() else checkpoint
        if not Path(model_config).is_file():
            raise CheckpointError(f"backbone tiny-clip: {model_config} not found; export the model with "
                                  "`python -m mvlpt.clip.pretrain` or set backbone.model_config/checkpoint")
    if model_config is not None:
        mcfg = _read_model_config(model_config)
        model = _model_from_config(mcfg, precision="fp32", seed=seed)
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
    if label:
        model.mvlpt_name = cfg.name  # a label for error messages
    return Backbone(model, tokenizer, preprocess_cfg(model), cfg)
