"""Backbone loading: model configs, local checkpoints, freezing and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mvlpt.clip import BackboneConfig, create_backbone, tiny_clip_config
from mvlpt.core.errors import CheckpointError, ConfigError


def test_tiny_config_is_seeded_and_frozen():
    a, tok, pre, _ = create_backbone(tiny_clip_config(), seed=3)
    b, _, _, _ = create_backbone(tiny_clip_config(), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
    assert pre.size == 32 and len(pre.mean) == 3
    assert tok(["a photo of a cat."]).shape == (1, 32)


def test_model_config_and_local_checkpoint(tmp_path):
    src, _, _, _ = create_backbone(tiny_clip_config(), seed=5)
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps({"model_cfg": tiny_clip_config()}))
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(weights))
    model, tok, pre, _ = create_backbone(BackboneConfig(name="tiny", pretrained=None, model_config=str(cfg_file),
                                                     checkpoint=str(weights)))
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), src.state_dict().values()))
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.encode_image(x), src.encode_image(x))
    bf16, _, _, _ = create_backbone(BackboneConfig(name="tiny", pretrained=None, model_config=str(cfg_file),
                                                checkpoint=str(weights), precision="bf16"))
    assert bf16.visual.conv1.weight.dtype == torch.bfloat16


def test_checkpoint_for_another_model_is_refused(tmp_path):
    other, _, _, _ = create_backbone(tiny_clip_config(width=32), seed=0)
    weights = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(tiny_clip_config()))
    with pytest.raises(CheckpointError, match="does not fit the model config"):
        create_backbone(BackboneConfig(name="tiny", pretrained=None, model_config=str(cfg_file), checkpoint=str(weights)))


def test_bad_backbone_configs(tmp_path):
    with pytest.raises(ConfigError, match="model_config: no such file"):
        create_backbone(BackboneConfig(model_config=str(tmp_path / "missing.json")))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ConfigError, match=r"missing \['vision_cfg', 'text_cfg'\]"):
        create_backbone(BackboneConfig(model_config=str(bad)))
    with pytest.raises(CheckpointError, match="not-a-model"):
        create_backbone(BackboneConfig(name="not-a-model", pretrained=None))


def test_model_config_as_a_mapping_in_a_yaml_style_config():
    from mvlpt.core.config import from_dict

    cfg = from_dict(BackboneConfig, {"name": "tiny", "pretrained": None, "model_config": tiny_clip_config()})
    model, _, _, _ = create_backbone(cfg)
    ref, _, _, _ = create_backbone(tiny_clip_config(), seed=0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))
    assert model.mvlpt_name == "tiny"
