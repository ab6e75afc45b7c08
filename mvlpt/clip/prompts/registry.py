"""The registry of prompt methods: ``prompt.method`` → its :class:`~.base.PromptSet` class.

The method files register themselves here (:func:`register_prompt_method`); the package
(:mod:`mvlpt.clip.prompts`) imports every method file and re-exports the registry, so importing the
package is what fills it. Kept in its own module so that the method files import the registry, not
the package that imports them (no import cycle).
"""

from __future__ import annotations

import difflib
from typing import TypeVar

from mvlpt.core.errors import ConfigError

from .base import PromptSet

#: ``prompt.method`` → its :class:`PromptSet` class, in registration order
PROMPT_METHODS: dict[str, type[PromptSet]] = {}

M = TypeVar("M", bound=type[PromptSet])


def register_prompt_method(cls: M) -> M:
    """Class decorator: add a :class:`PromptSet` subclass to :data:`PROMPT_METHODS` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, PromptSet)):
        raise TypeError(f"a prompt method is a PromptSet subclass, found {cls!r}")
    if not cls.name:
        raise ValueError(f"prompt method {cls.__name__} has no name")
    known = PROMPT_METHODS.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"prompt method {cls.name!r} is already registered ({known.__module__}.{known.__qualname__})")
    PROMPT_METHODS[cls.name] = cls
    return cls


def prompt_method(name: str, where: str = "prompt.method") -> type[PromptSet]:
    """The registered method ``name``; an unknown name raises :class:`ConfigError` naming the methods."""
    cls = PROMPT_METHODS.get(name) if isinstance(name, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(name), list(PROMPT_METHODS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where} must be one of the registered prompt methods "
                          f"{', '.join(PROMPT_METHODS)}, found {name!r}{hint}")
    return cls


def prompt_shape_keys() -> tuple[str, ...]:
    """``method`` and every registered method's ``shape_keys`` (dotted ``prompt.*`` keys, no repeats)."""
    keys = ["method"]
    for cls in PROMPT_METHODS.values():
        keys += [k for k in cls.shape_keys if k not in keys]
    return tuple(keys)
