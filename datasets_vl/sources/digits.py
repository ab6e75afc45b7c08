"""scikit-learn's ``digits`` (1,797 grey 8x8 images, values 0..16) as a classification task.

Class names are the words "zero" .. "nine" (as in the shared MNIST / sign-digits data, so
digit tasks share class names), read as "a photo of the digit seven.". sklearn has no split:
a stratified 80/20 train/test split with ``random_state=0`` (``train_test_split``) is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..dataset import VLDataset, VLTask
from ..spec import DatasetSpec

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 images (N, 8, 8) scaled to 0..255, int labels (N,))``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return imgs, d.target.astype(int)


def load_digits_task(spec: DatasetSpec, ddir: Path | None = None, hint: str = "") -> VLTask:
    from sklearn.model_selection import train_test_split

    imgs, y = digits_images()
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=spec.test_fraction, stratify=y, random_state=0)
    classnames = list(spec.classnames) if spec.classnames else list(DIGIT_NAMES)
    splits = {}
    for split, idx in (("train", np.sort(idx_train)), ("test", np.sort(idx_test))):
        refs = [Image.fromarray(imgs[i]) for i in idx]
        splits[split] = VLDataset(f"{spec.name}/{split}", "classification", classnames, refs, [int(y[i]) for i in idx],
                                  ref_names=[f"digits[{int(i)}]" for i in idx],
                                  max_unreadable_fraction=spec.max_unreadable_fraction)
    return VLTask(spec.name, "classification", classnames, splits, [], [], meta={"source": "digits"})
