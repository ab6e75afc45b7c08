"""Fixtures shared by the CLIP tests."""

import pytest

from mvlpt.clip import create_backbone, tiny_clip_config


@pytest.fixture(scope="module")
def backbone():
    """A tiny random CLIP (model, tokenizer, preprocess), one per test module."""
    return create_backbone(tiny_clip_config(), seed=0)[:3]
