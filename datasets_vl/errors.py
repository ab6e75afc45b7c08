"""Error types of ``datasets_vl`` (the generic ones come from :mod:`mvlpt.core.errors`)."""

from __future__ import annotations

from mvlpt.core.errors import ConfigError, DataError

__all__ = ["ConfigError", "DataError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says what to download and where to put it."""
