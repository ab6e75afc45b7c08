"""mvlpt: multitask prompt tuning of frozen foundation models (MPT on T5, MVLPT on CLIP)."""

__version__ = "0.1.0"
