"""Which backbone a run was trained on, and the check that a later command uses the same one.

Every run records ``meta.backbone`` in its ``config.json`` (:func:`backbone_identity`): the name as
configured, where it was loaded from, the tokenizer, and fingerprints of the weights and of the
vocabulary. ``eval``, ``predict`` and the stages that read a teachers / source run take the backbone
from that run where their config names none (:func:`backbone_for_run`) and refuse one whose weights
or vocabulary differ (:func:`check_same_backbone`), naming both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from mvlpt.core.config import from_dict, to_dict
from mvlpt.core.errors import ConfigError

from .backbone import SHIPPED, resolve_name, tokenizer_name
from .config import BackboneConfig

#: elements of each weight tensor that enter the fingerprint (all of a smaller tensor, else an even stride)
FINGERPRINT_SAMPLES = 1 << 16


def fingerprint_weights(model: nn.Module) -> str:
    """A short sha256 of every tensor's name, shape and values (strided sample of large tensors, as fp32)."""
    h = hashlib.sha256()
    for key, t in sorted(model.state_dict().items()):
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(flat[::step][:FINGERPRINT_SAMPLES].float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint_vocab(tokenizer: Any) -> str:
    """A short sha256 of the tokenizer's vocabulary (token → id)."""
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:16]


def _where(value: str) -> str:
    """A local directory as an absolute path; a hub name (or ``byt5``, ``tiny``) as it is."""
    p = Path(value).expanduser()
    return str(p.resolve()) if p.is_dir() else value


def config_identity(cfg: BackboneConfig) -> dict[str, Any]:
    """What a config says the backbone is, without loading it (name, source, tokenizer, tiny settings)."""
    out: dict[str, Any] = {"name": cfg.name, "source": _where(resolve_name(cfg.name)), "tokenizer": cfg.tokenizer,
                           "tokenizer_source": _where(tokenizer_name(cfg))}
    if cfg.name == "tiny":
        out["tiny"] = to_dict(cfg.tiny)
    return out


def backbone_identity(cfg: BackboneConfig, model: nn.Module, tokenizer: Any) -> dict[str, Any]:
    """``meta.backbone`` of a run: :func:`config_identity` plus the weights' and vocabulary's fingerprints."""
    return {**config_identity(cfg), "weights": fingerprint_weights(model), "vocab": fingerprint_vocab(tokenizer),
            "vocab_size": len(tokenizer)}


def describe(identity: Mapping[str, Any]) -> str:
    """``backbone.name='…' backbone.tokenizer='…' [weights …, vocab …]`` (the tiny settings for ``tiny``)."""
    name = repr(identity.get("name"))
    if identity.get("tiny"):
        name += " (tiny: " + ", ".join(f"{k}={v}" for k, v in identity["tiny"].items()) + ")"
    tok = repr(identity["tokenizer"]) if identity.get("tokenizer") else "its own"
    prints = ", ".join(f"{k} {identity[k]}" for k in ("weights", "vocab") if identity.get(k))
    return f"backbone.name={name}, backbone.tokenizer={tok}" + (f" [{prints}]" if prints else "")


def recorded_backbone(config: Mapping[str, Any]) -> tuple[BackboneConfig, dict[str, Any] | None]:
    """A run's ``backbone`` config and its recorded ``meta.backbone`` (``None`` for runs that predate it)."""
    bcfg = from_dict(BackboneConfig, config.get("backbone") or {}, "backbone")
    meta = config.get("meta")
    recorded = meta.get("backbone") if isinstance(meta, Mapping) else None
    return bcfg, dict(recorded) if isinstance(recorded, Mapping) else None


def _reachable(value: str | None, recorded_source: str | None) -> str | None:
    """A run's relative directory that does not exist from here → the absolute one the run recorded."""
    if value is None or value in SHIPPED or value in ("tiny", "byt5") or Path(value).expanduser().exists():
        return value
    return recorded_source if recorded_source and Path(recorded_source).is_dir() else value


def backbone_for_run(cfg: BackboneConfig | None, run: BackboneConfig, recorded: Mapping[str, Any] | None) -> BackboneConfig:
    """The backbone to load for a command reading a run: ``cfg`` where it names one (``backbone.name`` set;
    it is then checked against the run), else the run's name, tokenizer and tiny settings (``cfg``'s
    lengths and dropout kept; a ``backbone.tokenizer`` of ``cfg`` is kept, and checked)."""
    if cfg is not None and cfg.name is not None:
        return cfg
    name, tok = run.name, run.tokenizer
    if recorded:
        name, tok = _reachable(name, recorded.get("source")), _reachable(tok, recorded.get("tokenizer_source"))
    if cfg is not None and cfg.tokenizer:
        tok = cfg.tokenizer
    return replace(cfg if cfg is not None else run, name=name, tokenizer=tok, tiny=run.tiny)


def check_same_backbone(current: Mapping[str, Any], run: BackboneConfig, recorded: Mapping[str, Any] | None,
                        path: str | Path, what: str, given: str = "this config gives") -> None:
    """Refuse to read run ``path`` (``what``: ``checkpoint``, ``prompt.source_path``, ``teacher_path``) with a
    backbone other than its own: different weights or vocabulary (runs that record them), else a different
    source, tokenizer or tiny settings (older runs). The error names both backbones."""
    if recorded and recorded.get("weights") and recorded.get("vocab"):
        theirs: Mapping[str, Any] = recorded
        same = all(recorded[k] == current.get(k) for k in ("weights", "vocab"))
    else:
        theirs = config_identity(run)
        keys = ("source", "tokenizer_source", "tiny")
        same = all(theirs.get(k) == current.get(k) for k in keys)
    if not same:
        raise ConfigError(
            f"{what} {path} was trained on {describe(theirs)}, but {given} {describe(current)}: its prompts would be "
            "read by another model. Use the run's backbone: leave backbone.name and backbone.tokenizer unset (they "
            "then come from the run) or set them to the run's values")
