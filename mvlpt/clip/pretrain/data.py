"""Data of the tiny-CLIP pretraining wing: labelled images → image–caption pairs.

Images are read from the shared Parquet files (``{"image", "label"}`` with class names in the
schema), resized and centre-cropped exactly as the model's evaluation transform does, and kept
as one ``uint8`` tensor per split (cached under ``cache_dir`` as safetensors), and normalised per
batch with the model's preprocessing record (:class:`datasets_vl.Preprocess`). Captions are drawn
per sample from a family of templates (``generic``, ``digit``, ``clothing``), optionally behind a
generic prefix so that later text positions (where prompt tuning puts class names) get trained.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from datasets_vl.transforms import Preprocess
from mvlpt.core.checkpoint import load_tensors, save_tensors
from mvlpt.core.data_root import shared_data_root
from mvlpt.core.errors import DataError

#: caption templates per family; ``{}`` is the class name
TEMPLATES: dict[str, list[str]] = {
    "generic": [
        "a photo of a {}.", "a photo of the {}.", "a blurry photo of a {}.", "a low resolution photo of a {}.",
        "a cropped photo of the {}.", "a close-up photo of a {}.", "a bright photo of a {}.", "a dark photo of the {}.",
        "a good photo of a {}.", "a bad photo of the {}.", "a photo of the small {}.", "a photo of the large {}.",
        "an image of a {}.", "a picture of a {}.", "a {}.", "{}", "the {}.", "a pixelated photo of a {}.",
        "a jpeg corrupted photo of a {}.", "there is a {} in the image.", "a photo that shows a {}.",
        "a snapshot of a {}.", "itap of a {}.", "art of the {}.",
    ],
    "digit": [
        "a photo of a {}.", "a photo of the digit {}.", "a photo of the number {}.", "a handwritten digit {}.",
        "a handwritten {}.", "the number {}.", "the digit {}.", "a drawing of the number {}.",
        'a photo of the number: "{}".', "a black and white photo of the digit {}.", "a blurry photo of the digit {}.",
        "a {}.", "{}", "an image of the digit {}.", "a scan of a handwritten {}.",
    ],
    "shape": [
        "a {}.", "a photo of a {}.", "a drawing of a {}.", "a simple image of a {} on a white background.",
        "{}", "an image with a {} in it.", "a picture of a {}.", "a computer drawing of a {}.", "there is a {}.",
        "a flat {} on a plain background.", "a small image of a single {}.",
    ],
    "clothing": [
        "a photo of a {}.", "a photo of a {}, a type of clothing.", "a photo of the {}.", "a {}.", "{}",
        "a black and white photo of a {}.", "a low resolution photo of a {}.", "an image of a {}.",
        "a product photo of a {}.", "a picture of a {}, something to wear.", "a grey photo of the {}.",
    ],
}

#: optional caption prefixes (they move the class name to later text positions)
PREFIXES: list[str] = [
    "here is", "this is", "look:", "this image shows", "in this picture we can see", "the picture below shows",
    "a small square image in which you can see", "an example from a labelled collection of images:",
    "from the training set, a sample labelled as follows:", "taken from a dataset of many small pictures of things:",
    "the label of this image, written out as a short sentence for a language model, is",
]

_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def default_data_root() -> Path:
    """``$MVLPT_DATA`` (old name ``$MVLPT_SHARED_DATA``) or ``<repo>/../shared/data`` (beside the checkout)."""
    return shared_data_root()


def resize_crop(img: Image.Image, size: int) -> np.ndarray:
    """RGB, shorter side to ``size`` (bicubic, antialiased), centre crop: ``uint8 (3, size, size)``.

    The same geometry as open_clip's ``image_transform(size, is_train=False)``."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    img = img.convert("RGB")
    img = CenterCrop(size)(Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=True)(img))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def read_parquet_split(path: Path) -> tuple[list[bytes], list[int], list[str]]:
    """Image bytes, labels and class names of one shared Parquet split."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"image split not found: {path} (expected a Parquet file from ../shared/data; "
                        "set $MVLPT_DATA or data.root)")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"huggingface"])
    names = meta["info"]["features"]["label"]["names"]
    images = [row["bytes"] for row in table.column("image").to_pylist()]
    labels = [int(x) for x in table.column("label").to_pylist()]
    return images, labels, list(names)


def load_image_split(root: str | Path, name: str, split: str, size: int, cache_dir: str | Path | None = None,
                     max_n: int = 0, seed: int = 0) -> tuple[Tensor, Tensor, list[str]]:
    """``(images uint8 (N, 3, size, size), labels (N,), class names)`` of ``<root>/<name>/<split>.parquet``.

    ``max_n > 0`` keeps a seeded random subset of that many rows. With ``cache_dir`` the decoded
    tensors are cached (keyed by file content hash, size and subset)."""
    path = Path(root) / name / f"{split}.parquet"
    cache = None
    if cache_dir:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
        cache = Path(cache_dir) / f"{name}-{split}-{size}px-{max_n}-{seed}-{digest}.safetensors"
        if cache.is_file():
            t = load_tensors(cache)
            names = json.loads(cache.with_suffix(".json").read_text())
            return t["images"], t["labels"], names
    raw, labels, names = read_parquet_split(path)
    idx = list(range(len(raw)))
    if 0 < max_n < len(idx):
        idx = sorted(random.Random(seed).sample(idx, max_n))
    images = np.stack([resize_crop(Image.open(io.BytesIO(raw[i])), size) for i in idx])
    out = torch.from_numpy(images), torch.tensor([labels[i] for i in idx], dtype=torch.long), names
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(cache, {"images": out[0], "labels": out[1]})
        cache.with_suffix(".json").write_text(json.dumps(names))
    return out


def normalize(images: Tensor, preprocess: Preprocess | None = None) -> Tensor:
    """``uint8 (B, 3, H, W)`` → float, scaled to [0, 1] and normalised with the mean/std of ``preprocess``
    (default: CLIP's, what the tiny CLIP's record holds): :meth:`Preprocess.normalize`."""
    return (preprocess or Preprocess()).normalize(images)


def augment(image: Tensor, flip: bool, pad: int = 2) -> Tensor:
    """Random crop after ``pad`` px reflection padding, plus a random horizontal flip (torch RNG)."""
    c, h, w = image.shape
    if pad > 0:
        padded = torch.nn.functional.pad(image.unsqueeze(0).float(), (pad, pad, pad, pad), mode="reflect")[0]
        i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
        image = padded[:, i:i + h, j:j + w].to(image.dtype)
    if flip and bool(torch.rand(()) < 0.5):
        image = image.flip(-1)
    return image


class CaptionDataset(Dataset):
    """Labelled images as image–caption pairs: ``{"image": uint8 (3,H,W), "caption": str, "label": int}``.

    With ``captions``, each access draws a template of ``family`` (Python ``random``, seeded per draw
    by the loop's sampler) and, with probability ``prefix_prob``, a prefix from :data:`PREFIXES`;
    without, the caption is empty (evaluation). ``augment`` shifts (and, with ``flip``, flips) images.
    """

    def __init__(self, images: Tensor, labels: Tensor, class_names: Sequence[str], family: str = "generic",
                 captions: bool = True, augment: bool = True, flip: bool = True, prefix_prob: float = 0.0):
        if family not in TEMPLATES:
            raise DataError(f"unknown caption template family {family!r}; expected one of {sorted(TEMPLATES)}")
        if len(images) != len(labels) or len(images) == 0:
            raise DataError(f"need as many images as labels (>0), found {len(images)} images, {len(labels)} labels")
        self.images, self.labels, self.class_names = images, labels, list(class_names)
        self.templates = TEMPLATES[family]
        self.captions, self.augment, self.flip, self.prefix_prob = captions, augment, flip, prefix_prob

    def __len__(self) -> int:
        return len(self.images)

    def caption(self, label: int) -> str:
        name = self.class_names[label]
        text = random.choice(self.templates).format(name)
        if self.prefix_prob > 0 and random.random() < self.prefix_prob:
            text = f"{random.choice(PREFIXES)} {text}"
        return text

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = int(self.labels[i])
        image = augment(self.images[i], self.flip) if self.augment else self.images[i]
        return {"image": image, "caption": self.caption(label) if self.captions else "", "label": label}


class CachedTokenizer:
    """Wraps an open_clip tokenizer with a per-string cache (captions repeat a lot)."""

    def __init__(self, tokenizer: Callable[[list[str]], Tensor]):
        self.tokenizer = tokenizer
        self.cache: dict[str, Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for t, row in zip(missing, self.tokenizer(missing)):
                self.cache[t] = row
        return torch.stack([self.cache[t] for t in texts])


def make_collate(tokenizer: Callable[[list[str]], Tensor]) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Samples → ``{"images": float (B,3,H,W), "texts": long (B,L), "labels", "task_ids", "index"}``."""
    tok = CachedTokenizer(tokenizer)

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = {
            "images": normalize(torch.stack([s["image"] for s in samples])),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.long),
            "task_ids": torch.tensor([s["task_id"] for s in samples], dtype=torch.long),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        }
        captions = [s["caption"] for s in samples]
        if any(captions):
            batch["texts"] = tok(captions)
        return batch

    return collate


def sklearn_digits_sample(n: int = 300, size: int = 32) -> tuple[Tensor, Tensor, list[str]]:
    """The first ``n`` images of scikit-learn's bundled ``digits`` (8×8, 16 grey levels) as white-on-black
    ``uint8`` RGB at ``size`` px: a fixed sample that needs no download and no shared data."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = [Image.fromarray((d.images[i] * (255.0 / 16.0)).round().astype(np.uint8), mode="L") for i in range(n)]
    arr = np.stack([resize_crop(im, size) for im in imgs])
    return torch.from_numpy(arr), torch.tensor(d.target[:n], dtype=torch.long), list(_DIGIT_WORDS)


def easy_vqa_shape_sample(n: int = 300, size: int = 32) -> tuple[Tensor, Tensor, list[str]]:
    """``n`` easy-vqa *test* images (the ``easy-vqa`` package's files) labelled by shape, read off the
    answers of "what shape ..." questions, in ascending image id order."""
    import easy_vqa

    shapes = ["circle", "rectangle", "triangle"]
    qs, answers, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    label: dict[int, int] = {}
    for q, a, i in zip(qs, answers, ids):
        if a in shapes and "shape" in q:
            label.setdefault(int(i), shapes.index(a))
    keep = sorted(label)[:n]
    arr = np.stack([resize_crop(Image.open(paths[i]), size) for i in keep])
    return torch.from_numpy(arr), torch.tensor([label[i] for i in keep], dtype=torch.long), shapes


_VQA_COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
_VQA_SHAPES = ("circle", "rectangle", "triangle")


def easy_vqa_attributes(split: str = "train") -> dict[int, dict[str, str]]:
    """Colour and shape of each easy-vqa image of ``split``, read off its questions and answers
    ("what is the blue shape?" → blue + the answer, "what color is ..." → the answer, ...)."""
    import easy_vqa

    qs, answers, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    attrs: dict[int, dict[str, str]] = {}
    for q, a, i in zip(qs, answers, ids):
        d = attrs.setdefault(int(i), {})
        words = q.rstrip("?").split()
        if a in _VQA_SHAPES:
            d["shape"] = a
        elif a in _VQA_COLORS:
            d["color"] = a
        if q.startswith("what is the ") and words[3] in _VQA_COLORS:
            d["color"] = words[3]
        if a == "yes":  # "is there a red shape" / "does the image contain a circle"
            for w in words:
                if w in _VQA_COLORS and "not" not in words and "no" not in words:
                    d["color"] = w
                if w in _VQA_SHAPES and "not" not in words and "no" not in words:
                    d["shape"] = w
    return attrs


def easy_vqa_captioned(split: str, size: int, cache_dir: str | Path | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """easy-vqa images of ``split`` as a captioned set: the class of an image is what is known of it
    ("blue circle", or "blue shape" / "circle" when only one attribute is asked about)."""
    import easy_vqa

    cache = Path(cache_dir) / f"easy_vqa-{split}-{size}px-captioned.safetensors" if cache_dir else None
    if cache is not None and cache.is_file():
        t = load_tensors(cache)
        return t["images"], t["labels"], json.loads(cache.with_suffix(".json").read_text())
    attrs = easy_vqa_attributes(split)
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    names: list[str] = []
    keep, labels = [], []
    for i in sorted(attrs):
        a = attrs[i]
        if not a:
            continue
        desc = f"{a['color']} {a['shape']}" if len(a) == 2 else (f"{a['color']} shape" if "color" in a else a["shape"])
        if desc not in names:
            names.append(desc)
        keep.append(i)
        labels.append(names.index(desc))
    arr = np.stack([resize_crop(Image.open(paths[i]), size) for i in keep])
    out = torch.from_numpy(arr), torch.tensor(labels, dtype=torch.long), names
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(cache, {"images": out[0], "labels": out[1]})
        cache.with_suffix(".json").write_text(json.dumps(names))
    return out
