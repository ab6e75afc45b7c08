"""Error types: each says what was expected, what was found and how to fix it."""

from __future__ import annotations


class MVLPTError(Exception):
    """Base class of the library's own errors."""


class ConfigError(MVLPTError, ValueError):
    """A configuration key or value is invalid."""


class ShapeMismatchError(MVLPTError, ValueError):
    """A tensor, checkpoint or prompt has a shape other than the one expected."""


class TaskIdError(MVLPTError, ValueError):
    """Task ids are out of range or of the wrong dtype/shape."""


class CheckpointError(MVLPTError, ValueError):
    """A checkpoint is missing, truncated, of the wrong format or for another model."""


class DataError(MVLPTError, ValueError):
    """A dataset is missing, empty or inconsistent."""


class NonFiniteLossError(MVLPTError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
