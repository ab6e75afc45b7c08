"""Does a config's backbone resolve without a download? The local names (``tiny-clip``, a model config,
a checkpoint, a directory) always do; a hub model must be in the open_clip / Hugging Face cache, or be
named explicitly (then it downloads when the run starts, unless ``HF_HUB_OFFLINE`` is set). Looked up in
the caches only: nothing here contacts the network. Used by :mod:`.run_config` (a config file that names
no backbone) and :mod:`.preflight` (every backbone a command will load).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from mvlpt.clip.backbone import TINY_CLIP, BackboneConfig
from mvlpt.core.config import to_dict
from mvlpt.core.errors import MVLPTError, PreflightError

OFFLINE_HINT = "set `backbone.name: tiny-clip` (the shipped tiny CLIP, offline)"
#: environment variables that forbid downloads
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def _hf_cached(repo: str, filenames: Sequence[str], cache_dir: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str) for f in filenames)


def pretrained_cached(name: str, tag: str, cache_dir: str | None = None) -> bool | None:
    """Whether open_clip's weights for ``name`` / ``tag`` are in the local cache (no network; looks where
    ``open_clip.create_model`` would download them). None: ``tag`` is not an open_clip tag of ``name``."""
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives, get_pretrained_cfg

    pcfg = get_pretrained_cfg(name, tag)
    if not pcfg:
        return None
    if "file" in pcfg:
        return Path(pcfg["file"]).is_file()
    if pcfg.get("hf_hub"):
        repo, filename = os.path.split(pcfg["hf_hub"])  # 'org/model/' → ('org/model', ''): the default file
        filename = filename or HF_WEIGHTS_NAME
        if _hf_cached(repo, [*_get_safe_alternatives(filename), filename], cache_dir):
            return True
    url = pcfg.get("url", "")
    return bool(url) and (Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)).is_file()


def backbone_problems(bb: BackboneConfig, notes: list[str]) -> list[str]:
    """What keeps ``bb`` from loading offline; a hub model that is not cached is a note (it will be
    downloaded) unless downloads are off (``HF_HUB_OFFLINE``), then a problem."""
    out: list[str] = []
    if bb.name == TINY_CLIP and bb.model_config is None:
        from mvlpt.clip.backbone import WEIGHTS_FILE, weights_dir

        root = Path(bb.checkpoint) if bb.checkpoint and Path(bb.checkpoint).is_dir() else weights_dir(TINY_CLIP)
        weights = Path(bb.checkpoint) if bb.checkpoint and not Path(bb.checkpoint).is_dir() else root / WEIGHTS_FILE
        for f in (root / f"{TINY_CLIP}.json", weights):
            if not f.is_file():
                out.append(f"backbone tiny-clip: {f} not found; export the model with `python -m mvlpt.clip.pretrain` "
                           "(or run `mvlpt quickstart`, which falls back to a random tiny CLIP)")
        return out
    if bb.model_config is not None:
        from mvlpt.clip.backbone import _read_model_config

        try:
            bb.check_files()
            _read_model_config(bb.model_config)
        except MVLPTError as e:
            out.append(str(e))
        return out
    if bb.checkpoint is not None and not Path(bb.checkpoint).exists():
        out.append(f"backbone.checkpoint: no such file {bb.checkpoint!r}")
    if bb.name.startswith("local-dir:"):
        if not Path(bb.name[len("local-dir:"):]).is_dir():
            out.append(f"backbone.name={bb.name!r}: no such directory")
        return out
    where = f"backbone {bb.name!r}"
    if bb.name.startswith("hf-hub:"):
        cached = _hf_cached(bb.name[len("hf-hub:"):], ["open_clip_config.json"], bb.cache_dir)
    else:
        import open_clip

        if bb.name not in open_clip.list_models():
            return out + [f"backbone.name={bb.name!r} is not an open_clip model (e.g. ViT-B-16, ViT-B-32), "
                          f"hf-hub:<repo>, local-dir:<folder> or tiny-clip"]
        if bb.checkpoint or bb.pretrained is None or Path(bb.pretrained).is_file():
            return out  # local weights or random ones: nothing to download
        cached = pretrained_cached(bb.name, bb.pretrained, bb.cache_dir)
        if cached is None:
            tags = open_clip.list_pretrained_tags_by_model(bb.name)
            return out + [f"backbone.pretrained={bb.pretrained!r} is not an open_clip tag of {bb.name} "
                          f"(tags: {', '.join(tags) or 'none'}) nor a weights file"]
        where += f" (pretrained={bb.pretrained!r})"
    if not cached:
        msg = f"{where} is not in the local open_clip / Hugging Face cache"
        if _offline():
            out.append(f"{msg} and downloads are off ({'/'.join(OFFLINE_ENV)}); {OFFLINE_HINT}, or download it first")
        else:
            notes.append(f"{msg}: it will be downloaded when the run starts; {OFFLINE_HINT} to stay offline")
    return out


def default_backbone_cached(cache_dir: str | None = None) -> bool:
    """Whether the default backbone's (``BackboneConfig()``) weights are cached locally."""
    d = BackboneConfig()
    return bool(pretrained_cached(d.name, str(d.pretrained), cache_dir))


def check_named_backbone(raw: Mapping[str, Any], overrides: Sequence[str], bb: BackboneConfig, where: str) -> None:
    """A config (file ``where``, merged ``raw`` + ``overrides``) that names no backbone falls back to the
    default ``ViT-B-16`` / ``openai``: refused when those weights are not cached, instead of downloading
    them silently."""
    section = raw.get("backbone")
    named = isinstance(section, Mapping) and any(k in section for k in ("name", "model_config", "checkpoint"))
    named = named or any(o.split("=", 1)[0].strip() in ("backbone", "backbone.name", "backbone.model_config",
                                                        "backbone.checkpoint") for o in overrides)
    if named or to_dict(bb) != to_dict(BackboneConfig(cache_dir=bb.cache_dir, precision=bb.precision)):
        return
    if default_backbone_cached(bb.cache_dir):
        return
    raise PreflightError([f"{where}: the config names no backbone, so the default {bb.name} (pretrained="
                          f"{bb.pretrained}) would be downloaded from the hub (it is not in the local cache); "
                          f"{OFFLINE_HINT}, or name the hub model to download it (`backbone.name: {bb.name}`, "
                          f"`backbone.pretrained: {bb.pretrained}`)"], "config")
