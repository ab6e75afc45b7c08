"""The frozen T5 backbone and its tokenizer: hub name, local directory, the shipped ``tiny-t5``, or a
tiny random model built from a config. :mod:`text_mpt.run_backbone` records and checks which one a run used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mvlpt.core.errors import ConfigError
from mvlpt.core.runtime import freeze  # requires_grad=False and eval mode (the core's one freeze)

from .config import BackboneConfig, TinyT5Config

#: ``model_type`` values of the T5 family (t5, t5-v1_1, flan-t5 all report "t5")
T5_TYPES = ("t5",)
#: backbones shipped with the package: ``backbone.name`` → directory (weights and their own tokenizer)
SHIPPED = {"tiny-t5": Path(__file__).resolve().parent / "weights" / "tiny-t5"}
#: ``backbone.name`` when neither the config nor a run it reads names one
DEFAULT_NAME = "t5-base"


def resolve_name(name: str | None) -> str:
    """Where to load ``name`` from: a shipped name (``tiny-t5``) → its directory, unset → ``t5-base``."""
    if name is None:
        return DEFAULT_NAME
    return str(SHIPPED[name]) if name in SHIPPED else name


def tokenizer_name(cfg: BackboneConfig) -> str:
    """The tokenizer to load: ``backbone.tokenizer`` (a shipped name resolved), else ``byt5`` for the random
    ``tiny`` and the model's own (its directory or hub name) for every other backbone."""
    if cfg.tokenizer:
        return resolve_name(cfg.tokenizer)
    return "byt5" if cfg.name == "tiny" else resolve_name(cfg.name)


def load_tokenizer(cfg: BackboneConfig) -> Any:
    """``ByT5Tokenizer()`` for ``byt5`` (and by default for the tiny backbone), else ``AutoTokenizer``."""
    name = tokenizer_name(cfg)
    if name == "byt5":
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise ConfigError(f"could not load tokenizer {name!r} (a hub name or a local directory): {e}") from None


def build_tiny_t5(cfg: TinyT5Config, vocab_size: int) -> nn.Module:
    """A seeded random ``T5ForConditionalGeneration`` (same weights for the same config and seed)."""
    from transformers import T5Config, T5ForConditionalGeneration

    t5cfg = T5Config(vocab_size=vocab_size, d_model=cfg.d_model, d_ff=cfg.d_ff, num_layers=cfg.num_layers,
                     num_decoder_layers=cfg.num_layers, num_heads=cfg.num_heads, d_kv=cfg.d_kv,
                     decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return T5ForConditionalGeneration(t5cfg)


def load_t5(cfg: BackboneConfig, vocab_size: int | None = None) -> nn.Module:
    """The T5 model of ``cfg.name`` (hub name, local directory, ``tiny-t5`` or ``tiny``), unfrozen."""
    if cfg.name == "tiny":
        if vocab_size is None:
            raise ValueError("the tiny backbone needs the tokenizer's vocabulary size")
        return build_tiny_t5(cfg.tiny, vocab_size)
    from transformers import AutoConfig, T5ForConditionalGeneration

    source = resolve_name(cfg.name)
    try:
        t5cfg = AutoConfig.from_pretrained(source)
    except OSError as e:
        where = "local directory" if Path(source).exists() else "hub name (no network?) or local directory"
        raise ConfigError(f"backbone.name={cfg.name!r}: could not load it as a {where}: {e}") from None
    if t5cfg.model_type not in T5_TYPES:
        raise ConfigError(f"backbone.name={cfg.name!r} is a {t5cfg.model_type!r} model; expected a T5-family model "
                          "(t5, t5-v1_1, flan-t5)")
    return T5ForConditionalGeneration.from_pretrained(source)


def load_backbone(cfg: BackboneConfig) -> tuple[nn.Module, Any]:
    """Frozen T5 and its tokenizer; checks that the tokenizer fits the embedding table."""
    source = resolve_name(cfg.name)
    if cfg.name != "tiny" and source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
        raise ConfigError(f"backbone.name={cfg.name!r} looks like a local path but no such directory exists "
                          "(save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))")
    tokenizer = load_tokenizer(cfg)
    model = freeze(load_t5(cfg, vocab_size=len(tokenizer)))
    check_tokenizer_matches(cfg, model, tokenizer)
    return model, tokenizer


#: embedding rows of the ByT5 models (256 bytes + 3 specials + 125 extra ids)
BYT5_VOCAB = 384


def check_tokenizer_matches(cfg: BackboneConfig, model: nn.Module, tokenizer: Any) -> None:
    """Refuse a tokenizer whose ids mean something else to the backbone: byte ids (``byt5``) fed to a
    SentencePiece-vocabulary T5, a tokenizer other than the one saved in the backbone's own
    directory, or more tokens than embedding rows."""
    n_emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_emb:
        raise ConfigError(f"tokenizer has {len(tokenizer)} tokens but backbone {cfg.name!r} embeds only {n_emb}")
    if cfg.name == "tiny":
        return
    from transformers import ByT5Tokenizer

    if isinstance(tokenizer, ByT5Tokenizer) and n_emb != BYT5_VOCAB:
        raise ConfigError(f"backbone.name={cfg.name!r} has a {n_emb}-token (SentencePiece) vocabulary, but "
                          f"backbone.tokenizer={cfg.tokenizer!r} gives ByT5 byte ids: its ids would index the wrong "
                          "embeddings. Use the model's own tokenizer (leave backbone.tokenizer unset, or set it to "
                          f"{cfg.name!r}); byt5 fits only the random backbone.name=tiny or a ByT5 model")
    own = Path(resolve_name(cfg.name)).expanduser()
    if cfg.tokenizer and own.is_dir() and (own / "tokenizer_config.json").is_file() \
            and Path(tokenizer_name(cfg)).expanduser().resolve() != own.resolve():
        from transformers import AutoTokenizer

        if AutoTokenizer.from_pretrained(str(own)).get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"backbone.tokenizer={cfg.tokenizer!r} differs from the tokenizer saved with "
                              f"backbone.name={cfg.name!r}; its ids would index the wrong embeddings. Leave "
                              "backbone.tokenizer unset to use the model's own tokenizer")
