"""The tiny text configs use the shipped tiny-t5 with its own tokenizer; mismatched tokenizers are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvlpt.core.errors import ConfigError
from text_mpt.backbone import load_backbone
from text_mpt.config import BackboneConfig, load_run_config

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "text_mpt" / "weights" / "tiny-t5"
TINY = ROOT / "configs" / "text" / "tiny"


@pytest.mark.parametrize("config", ["teachers.yaml", "source.yaml", "adapt.yaml"])
def test_tiny_configs_load_the_shipped_model_with_its_tokenizer(config: str, monkeypatch):
    from transformers import ByT5Tokenizer

    monkeypatch.chdir(ROOT.parent)  # backbone.name: tiny-t5 is the shipped directory from anywhere
    cfg = load_run_config(TINY / config)
    assert cfg.backbone.name == "tiny-t5" and cfg.backbone.tokenizer is None
    model, tok = load_backbone(cfg.backbone)
    assert not isinstance(tok, ByT5Tokenizer) and len(tok) == model.config.vocab_size
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 1)
    ids = tok("sentence: a gorgeous film").input_ids
    assert max(ids) < model.config.vocab_size and 2 not in ids  # no <unk>


def test_byte_ids_into_the_sentencepiece_model_are_refused():
    with pytest.raises(ConfigError, match="byte ids"):
        load_backbone(BackboneConfig(name=str(WEIGHTS), tokenizer="byt5"))
    load_backbone(BackboneConfig(name="tiny", tokenizer="byt5"))  # the random tiny T5 is built for byte ids


def test_another_tokenizer_than_the_models_own_is_refused(tmp_path: Path):
    from text_mpt.pretrain.data import train_tokenizer

    texts = [f"the cat {i} sat on the mat near the dog number {i}" for i in range(300)]
    train_tokenizer(texts, tmp_path / "other", vocab_size=60, extra_ids=4)
    with pytest.raises(ConfigError, match="differs from the tokenizer saved"):
        load_backbone(BackboneConfig(name=str(WEIGHTS), tokenizer=str(tmp_path / "other")))
    load_backbone(BackboneConfig(name=str(WEIGHTS), tokenizer=str(WEIGHTS)))  # its own, named explicitly
