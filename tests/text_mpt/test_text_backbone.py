"""Backbone loading: a local save_pretrained directory, the tiny config, clear errors."""

import pytest
import torch

from mvlpt.core.errors import ConfigError
from text_mpt.backbone import build_tiny_t5, load_backbone, load_tokenizer
from text_mpt.config import BackboneConfig, TinyT5Config


def test_local_directory_backbone_is_frozen_and_identical(tmp_path):
    tok = load_tokenizer(BackboneConfig(name="tiny"))
    model = build_tiny_t5(TinyT5Config(seed=1), len(tok))
    model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    loaded, tok2 = load_backbone(BackboneConfig(name=str(tmp_path / "t5")))
    assert type(tok2).__name__ == "ByT5Tokenizer" and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.shared.weight, model.shared.weight)
    tiny, _ = load_backbone(BackboneConfig(name="tiny", tiny=TinyT5Config(seed=1)))
    torch.testing.assert_close(tiny.shared.weight, model.shared.weight)  # seeded: same weights every time


def test_missing_local_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        load_backbone(BackboneConfig(name=str(tmp_path / "nope")))
