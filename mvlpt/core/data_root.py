"""Where the data lives when a config does not say: one environment variable for both heads.

``$MVLPT_DATA`` names the data folder (CLIP registry datasets, ``glue/`` / ``superglue/`` for the
T5 head, the pretraining Parquet / JSON Lines files); ``$MVLPT_SHARED_DATA``, the name the
pretraining commands used before, is still read when ``MVLPT_DATA`` is unset. The project's shared
data sits beside the checkout, in ``../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the environment variable users set
DATA_ENV = "MVLPT_DATA"
#: the old name (pretraining commands), read when :data:`DATA_ENV` is unset or empty
LEGACY_DATA_ENV = "MVLPT_SHARED_DATA"
#: the repository checkout (``mvlpt/core/`` is two levels below it)
REPO_ROOT = Path(__file__).resolve().parents[2]
#: the shared data folder beside the checkout
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def env_data_root() -> Path | None:
    """``$MVLPT_DATA``, else ``$MVLPT_SHARED_DATA``; ``None`` when neither is set (or both are empty)."""
    value = os.environ.get(DATA_ENV) or os.environ.get(LEGACY_DATA_ENV)
    return Path(value).expanduser() if value else None


def shared_data_root() -> Path:
    """:func:`env_data_root`, else ``<repo>/../shared/data``."""
    return env_data_root() or SHARED_DATA
