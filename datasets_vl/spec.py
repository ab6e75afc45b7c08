"""``DatasetSpec``: the config block that names a dataset and where/how to read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from mvlpt.core.config import from_dict
from mvlpt.core.data_root import env_data_root

from .errors import ConfigError

SourceName = Literal[
    "auto", "hf", "imagefolder", "coop_split", "vqav2", "easy_vqa", "easy_vqa_shape", "easy_vqa_color", "digits"
]


@dataclass
class DatasetSpec:
    """How to load one task. ``source: auto`` looks ``name`` up in :data:`datasets_vl.registry.DATASETS`.

    Paths (``image_dir``, ``split_file``, ``data_files``, ``vqa_files``) are relative to the
    dataset directory: ``root`` itself for explicit sources, ``root/<registry subdir>`` for
    registry names. ``root`` defaults to ``$MVLPT_DATA``, then ``./data``.
    """

    name: str
    source: SourceName = "auto"
    root: str | None = None
    # Hugging Face datasets: a hub id or a builder ("parquet", "imagefolder") with files.
    hub_name: str | None = None
    hf_config: str | None = None
    data_files: dict[str, str | list[str]] = field(default_factory=dict)
    data_dir: str | None = None
    image_column: str = "image"
    label_column: str = "label"
    allow_download: bool = False
    # Our split name -> the source's split name (e.g. {"test": "validation"}).
    split_names: dict[str, str] = field(default_factory=dict)
    # CoOp split files / image folders.
    image_dir: str | None = None
    split_file: str | None = None
    test_fraction: float = 0.2  # single image-folder tree without train/test dirs: held-out share
    # VQA (VQAv2 JSON layout): split -> {"questions": ..., "annotations": ..., "images": ...}.
    vqa_files: dict[str, dict[str, str]] = field(default_factory=dict)
    max_answers: int = 3129
    answer_vocab_file: str | None = None
    # Classes and prompts.
    classnames: list[str] | None = None
    templates: list[str] | None = None
    ensemble_templates: list[str] | None = None
    max_unreadable_fraction: float = 0.01

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("dataset name must not be empty")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"{self.name}: test_fraction must be in (0, 1), found {self.test_fraction}")
        if self.max_answers < 1:
            raise ConfigError(f"{self.name}: max_answers must be >= 1, found {self.max_answers}")
        if not 0.0 <= self.max_unreadable_fraction < 1.0:
            raise ConfigError(f"{self.name}: max_unreadable_fraction must be in [0, 1)")
        if self.templates is not None and not self.templates:
            raise ConfigError(f"{self.name}: templates must not be an empty list")
        for t in (self.templates or []) + (self.ensemble_templates or []):
            if "{}" not in t:
                raise ConfigError(f"{self.name}: template {t!r} has no '{{}}' slot for the class name")
        for split, files in self.vqa_files.items():
            missing = {"questions", "annotations"} - set(files)
            if missing:
                raise ConfigError(f"{self.name}: vqa_files.{split} needs keys {sorted(missing)}")

    def data_root(self) -> Path:
        """``root``, else the data folder the environment names (``$MVLPT_DATA``, the one variable of both
        heads: :func:`mvlpt.core.data_root.env_data_root`), else ``./data``."""
        return Path(self.root).expanduser() if self.root else (env_data_root() or Path("data"))


def make_spec(spec_or_name: "DatasetSpec | str | Mapping[str, Any]", **overrides: Any) -> DatasetSpec:
    """A name, a mapping (config block) or a spec → a validated :class:`DatasetSpec`."""
    if isinstance(spec_or_name, DatasetSpec):
        data: dict[str, Any] = {k: v for k, v in vars(spec_or_name).items()}
    elif isinstance(spec_or_name, str):
        data = {"name": spec_or_name}
    elif isinstance(spec_or_name, Mapping):
        data = dict(spec_or_name)
    else:
        raise ConfigError(f"dataset: expected a name, a mapping or a DatasetSpec, found {type(spec_or_name).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(DatasetSpec, data, "dataset")
