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


class PreflightError(ConfigError, CheckpointError, DataError):
    """Every problem a command's preflight found before its first training step, listed in one message
    (a :class:`ConfigError`; also a checkpoint / data error, so handlers of either catch it)."""

    def __init__(self, problems: list[str], what: str = "preflight") -> None:
        self.problems, self.what = list(problems), what  # ``what``: the command that checked
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            msg = f"{len(self.problems)} problems found before any training step (nothing was run):\n" + \
                  "\n".join("  - " + p.replace("\n", "\n    ") for p in self.problems)
        super().__init__(msg)

    @classmethod
    def check(cls, problems: list[str], what: str = "preflight") -> None:
        """Raise when ``problems`` is not empty (duplicates dropped, order kept)."""
        unique = list(dict.fromkeys(problems))
        if unique:
            raise cls(unique, what)
