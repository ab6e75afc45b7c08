"""Unreadable-image handling.

Policy (documented contract): in a *training* split a sample whose image cannot be decoded is
**replaced by the next readable index** (``i+1, i+2, ...`` wrapping around), so a batch never
shrinks and an epoch never crashes. In an *evaluation* split (``on_unreadable="skip"``) it is
never replaced: the sample comes back as a placeholder marked ``"unreadable"`` that
:func:`collate_vl` leaves out of the scored rows, so a metric's ``n`` counts only images that were
actually scored. Each failure is recorded in the dataset's :class:`UnreadableTracker` and reported
by :meth:`UnreadableTracker.report` (at the end of an epoch / evaluation); as soon as more than
``max_fraction`` (default 1%) of the dataset's distinct files are unreadable, :class:`DataError`
is raised. A dataset with no readable image at all raises at once.

With ``DataLoader(num_workers>0)`` the trackers live in the worker processes; every
replacement sample therefore also carries ``"skipped"`` entries that :func:`collate_vl`
gathers into ``batch["skipped"]``; feed them back with :func:`absorb_skipped`.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from PIL import Image

from .errors import DataError

log = logging.getLogger(__name__)


def to_rgb(img: Image.Image) -> Image.Image:
    """Grey, palette, 16-bit, CMYK or RGBA images → RGB (alpha dropped on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def decode_image(ref: Any) -> Image.Image:
    """Open a path, raw bytes, an HF ``{"bytes", "path"}`` dict or a PIL image; fully decoded RGB."""
    if isinstance(ref, Image.Image):
        img = ref
    elif isinstance(ref, Mapping):
        if ref.get("bytes") is not None:
            img = Image.open(io.BytesIO(ref["bytes"]))
        elif ref.get("path"):
            img = Image.open(ref["path"])
        else:
            raise ValueError("image entry has neither bytes nor path")
    elif isinstance(ref, (bytes, bytearray)):
        img = Image.open(io.BytesIO(ref))
    elif isinstance(ref, (str, Path)):
        img = Image.open(ref)
    else:
        raise TypeError(f"cannot decode an image from {type(ref).__name__}")
    img.load()  # force decoding now, so truncated files fail here
    return to_rgb(img)


@dataclass
class UnreadableTracker:
    """Counts unreadable files for one dataset over one epoch.

    ``size``: the dataset's number of files; when > 0, :meth:`record` raises :class:`DataError`
    as soon as more than ``max_fraction`` of them are unreadable (not only at the report)."""

    dataset_name: str = "dataset"
    max_fraction: float = 0.01
    counts: Counter = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)
    size: int = 0
    action: str = "replaced by the next readable one"

    def record(self, file: str, error: BaseException | str) -> None:
        self.counts[file] += 1
        self.errors.setdefault(file, f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error)
        if self.size > 0 and len(self.counts) / self.size > self.max_fraction:
            raise DataError(self._message(self.size) + self._too_many())

    def __len__(self) -> int:
        return len(self.counts)

    def _message(self, dataset_size: int) -> str:
        n = len(self.counts)
        files = sorted(self.errors.items())
        listing = "; ".join(f"{f} ({e})" for f, e in files[:20])
        more = f"; ... and {n - 20} more" if n > 20 else ""
        return (f"{self.dataset_name}: skipped {n} unreadable image(s) of {dataset_size} "
                f"({n / max(dataset_size, 1):.2%}), each {self.action}: {listing}{more}")

    def _too_many(self) -> str:
        return (f". More than {self.max_fraction:.0%} of the images are unreadable: "
                "re-download or repair the files (or raise max_unreadable_fraction).")

    def report(self, dataset_size: int, reset: bool = True) -> dict[str, Any]:
        """Summarise (and log once) this epoch's unreadable files; raise :class:`DataError` above the limit.

        Returns ``{"dataset", "unreadable", "skips", "size", "fraction", "files": {file: error}}``.
        """
        n = len(self.counts)
        summary = {
            "dataset": self.dataset_name,
            "unreadable": n,
            "skips": int(sum(self.counts.values())),
            "size": dataset_size,
            "fraction": n / max(dataset_size, 1),
            "files": dict(sorted(self.errors.items())),
        }
        msg = self._message(dataset_size) if n else ""
        if reset:
            self.counts = Counter()
            self.errors = {}
        if n:
            if summary["fraction"] > self.max_fraction:
                raise DataError(msg + self._too_many())
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            log.warning(msg)
        return summary


def fetch_robust(
    i: int,
    candidates: Sequence[int],
    load: Callable[[int], dict[str, Any]],
    name_of: Callable[[int], str],
    tracker: UnreadableTracker,
    placeholder: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``load(candidates[i])``; on a decode failure try ``candidates[i+1]``, ... (wrapping).

    With ``placeholder`` given (evaluation splits), a decode failure is not replaced:
    ``placeholder(candidates[i])`` is returned with ``"unreadable": True`` and its ``"skipped"`` entry.
    ``load`` must raise :class:`UnreadableImage` for decode failures only (other errors propagate).
    """
    n = len(candidates)
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for a dataset of {n} samples")
    if placeholder is not None:
        j = candidates[i]
        try:
            return load(j)
        except UnreadableImage as e:
            name = name_of(j)
            tracker.record(name, e.__cause__ or e)
            entry = {"file": name, "error": str(e.__cause__ or e), "in_worker": _in_worker()}
            return {**placeholder(j), "unreadable": True, "skipped": [entry]}
    skipped: list[dict[str, Any]] = []
    for step in range(n):
        j = candidates[(i + step) % n]
        try:
            sample = load(j)
        except UnreadableImage as e:
            name = name_of(j)
            tracker.record(name, e.__cause__ or e)
            skipped.append({"file": name, "error": str(e.__cause__ or e), "in_worker": _in_worker()})
            continue
        if skipped:
            sample["skipped"] = skipped
        return sample
    raise DataError(f"{tracker.dataset_name}: none of its {n} images could be decoded (first: {skipped[0]['file']}: "
                    f"{skipped[0]['error']}); check the image root and the files")


class UnreadableImage(Exception):
    """Raised (from the decoding error) by a dataset's loader when an image cannot be decoded."""


def _in_worker() -> bool:
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover
        return False
    return get_worker_info() is not None


def absorb_skipped(batch: Mapping[str, Any], trackers: Mapping[int, UnreadableTracker] | UnreadableTracker) -> None:
    """Record ``batch["skipped"]`` entries that happened in DataLoader worker processes
    (in-process skips were already recorded). ``trackers``: one tracker or ``{task_id: tracker}``."""
    for entry in batch.get("skipped") or ():
        if not entry.get("in_worker"):
            continue
        tr = trackers if isinstance(trackers, UnreadableTracker) else trackers.get(int(entry.get("task_id", 0)))
        if tr is not None:
            tr.record(entry["file"], entry["error"])
