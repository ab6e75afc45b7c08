"""The prompt methods of the CLIP head, as a registry.

:data:`PROMPT_METHODS` maps ``prompt.method`` to its :class:`~.base.PromptSet` class; the config
validates ``method`` against it (:func:`prompt_method`: an unknown name is an error naming the
registered methods and the nearest one), the task model builds from it (:func:`build_prompt_set`),
and a saved run is checked for the keys the methods declare (:func:`prompt_shape_keys`).

Adding a method = one file defining a :class:`~.base.PromptSet` subclass decorated with
:func:`register_prompt_method` (its ``name``, ``uses_text`` / ``uses_visual``, ``shape_keys``) + one
import line at the end of this file. A method registered from anywhere else (a plug-in, a test) is
usable the same way once its module is imported.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, TypeVar

from mvlpt.core.errors import ConfigError
from mvlpt.core.stages import SourceRuns, Stage

from .base import BackboneDims, Prompts, PromptSet, TextEmbedder, stage_prompt, text_prompt_shape, visual_prompt_shape

if TYPE_CHECKING:
    from ..prompt_config import CLIPPromptConfig

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


def build_prompt_set(cfg: "CLIPPromptConfig", stage: Stage, num_tasks: int, dims: BackboneDims,
                     embed_text: TextEmbedder | None, sources: SourceRuns | None = None) -> PromptSet:
    """The :class:`PromptSet` of ``cfg.method``. ``sources`` holds the source runs already read (one per
    command); without it, each source run the prompts start from is read once for this set."""
    sources = sources if sources is not None else SourceRuns()
    return prompt_method(cfg.method)(cfg, stage, num_tasks, dims, embed_text, sources)


# -- the methods: importing a method's file registers it (one line per method) ----------------------------------
from . import coop  # noqa: E402,F401
from . import vpt  # noqa: E402,F401
from . import upt  # noqa: E402,F401

__all__ = [
    "PROMPT_METHODS", "BackboneDims", "PromptSet", "Prompts", "build_prompt_set", "prompt_method",
    "prompt_shape_keys", "register_prompt_method", "stage_prompt", "text_prompt_shape", "visual_prompt_shape",
]
