"""Fixtures for datasets_vl tests (helpers live in dvl_helpers.py: a unique module name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets_vl import build_transforms
from dvl_helpers import SHARED, COLORS, make_tree, make_vqa, write_image  # noqa: F401


@pytest.fixture
def small_tf():
    """Tiny CLIP-style transforms (16 px) so tests stay fast."""
    return build_transforms(16, train_augment=False)


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "flowers5" / "train.parquet").is_file():
        pytest.skip("../shared/data is not present (a fresh clone has no shared data)")
    return SHARED
