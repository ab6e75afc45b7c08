"""Task data: loading with ``datasets`` (hub or local files), few-shot sampling, tokenisation, collation.

Batching: training batches are drawn by the core's mixed-task sampler and padded
dynamically here (to the longest input / answer of the batch). Evaluation datasets are
sorted by input length (``sort_by_length``) so that consecutive evaluation batches
hold similar lengths: length-bucketed batches with little padding.
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from mvlpt.core.errors import ConfigError, DataError

from .config import TaskConfig
from .tasks import Example, TaskSpec, custom_task, examples_from_rows, get_task

_EXTS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


class TruncationWarning(UserWarning):
    """Inputs or answers longer than the configured maximum were truncated."""


def task_spec(tc: TaskConfig) -> TaskSpec:
    """The :class:`TaskSpec` of a task config (built in or custom)."""
    if tc.is_custom:
        return custom_task(tc.name, tc.template or "", tc.labels, tc.verbalizers, tc.label_field, tc.metrics or ["accuracy"])
    return get_task(tc.name)


def _split_name(tc: TaskConfig, spec: TaskSpec, which: str, local: bool) -> str:
    given = tc.train_split if which == "train" else tc.eval_split
    if given:
        return given
    splits = spec.local_splits if local else spec.hub_splits
    return splits[0] if which == "train" else splits[1]


def _find_file(folder: Path, split: str) -> Path:
    cands = [folder / f"{split}{ext}" for ext in _EXTS]
    for c in cands:
        if c.is_file():
            return c
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "folder does not exist"
    raise DataError(f"no file for split {split!r} in {folder}: looked for {[c.name for c in cands]}; found {found}")


def _load_file(path: Path, split: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    builder = _EXTS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unsupported file type; use one of {sorted(_EXTS)}")
    kw = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    ds = load_dataset(builder, data_files={split: str(path)}, split=split, **kw)
    return ds.to_list()


def load_rows(tc: TaskConfig, which: str, data_root: str | None = None) -> list[dict[str, Any]]:
    """Raw rows of a task's ``train`` or ``eval`` split."""
    spec = task_spec(tc)
    if tc.data_files:
        split = _split_name(tc, spec, which, local=True)
        if split not in tc.data_files:
            raise DataError(f"task {tc.name!r}: data_files has no split {split!r}; it has {sorted(tc.data_files)}")
        return _load_file(Path(tc.data_files[split]), split)
    folder = None
    if tc.path:
        folder = Path(tc.path)
    elif data_root and spec.local_dir:
        folder = Path(data_root) / spec.local_dir
    if folder is not None:
        split = _split_name(tc, spec, which, local=True)
        return _load_file(_find_file(folder, split), split)
    hub = (tc.hub_name, tc.hub_config) if tc.hub_name else spec.hub
    if hub is None:
        raise ConfigError(f"task {tc.name!r}: no data source; set tasks[].path or tasks[].data_files")
    from datasets import load_dataset

    split = _split_name(tc, spec, which, local=False)
    return load_dataset(hub[0], hub[1], split=split).to_list()


def subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn without replacement (all when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(examples):
        return examples
    idx = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def few_shot(examples: list[Example], k: int, seed: int) -> list[Example]:
    """``k`` examples per gold class (every class present is kept; a class with fewer keeps all)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[-1 if ex.label is None else ex.label].append(i)
    rng = random.Random(seed)
    keep: list[int] = []
    for lab in sorted(by_label):
        ids = by_label[lab]
        keep += rng.sample(ids, min(k, len(ids)))
    return [examples[i] for i in sorted(keep)]


def load_examples(tc: TaskConfig, which: str, data_root: str | None = None, seed: int = 0) -> list[Example]:
    """Formatted examples of a split (subsampled to ``max_train_examples`` / ``max_eval_examples``)."""
    spec = task_spec(tc)
    rows = load_rows(tc, which, data_root)
    try:
        examples = examples_from_rows(spec, rows)
    except DataError as e:
        raise DataError(f"task {tc.name!r} ({which} split): {e}") from None
    if not examples:
        raise DataError(f"task {tc.name!r}: the {which} split is empty")
    n = tc.max_train_examples if which == "train" else tc.max_eval_examples
    return subsample(examples, n, seed)


def _truncate(ids: list[int], limit: int, eos: int | None) -> list[int]:
    if len(ids) <= limit:
        return ids
    return ids[: limit - 1] + [eos] if eos is not None else ids[:limit]


class TextTaskDataset(Dataset):
    """Tokenised examples of one task.

    Items: ``input_ids`` (list), ``cand_ids`` (list of lists, one per candidate), ``label`` (int or -1),
    ``value`` (float or None), ``example_id`` (position in ``examples``). Inputs longer than
    ``max_input_length`` and answers longer than ``max_target_length`` are truncated; the counts (inputs,
    distinct answer texts) are reported once with a :class:`TruncationWarning` (and kept in ``truncated``).
    """

    def __init__(self, name: str, examples: Sequence[Example], tokenizer, max_input_length: int,
                 max_target_length: int, sort_by_length: bool = False):
        if not examples:
            raise DataError(f"task {name!r}: no examples")
        self.name = name
        eos = getattr(tokenizer, "eos_token_id", None)
        inputs = tokenizer([e.input_text for e in examples])["input_ids"]
        self.truncated = {"inputs": sum(len(x) > max_input_length for x in inputs), "answers": 0}
        total = {"inputs": len(examples), "answers": 0}
        inputs = [_truncate(x, max_input_length, eos) for x in inputs]
        texts = sorted({c for e in examples for c in e.candidates})
        tok = dict(zip(texts, tokenizer(texts)["input_ids"])) if texts else {}
        long_answers = {t for t in texts if len(tok[t]) > max_target_length}
        self.truncated["answers"] = len(long_answers)
        total["answers"] = len(texts)
        tok = {t: _truncate(ids, max_target_length, eos) for t, ids in tok.items()}
        self.items = []
        for i, (e, ids) in enumerate(zip(examples, inputs)):
            cands = [tok[c] for c in e.candidates]
            if len({tuple(c) for c in cands}) < len(cands):
                raise DataError(f"task {name!r}, example {i}: two answers {e.candidates} tokenise identically "
                                f"(after truncation to {max_target_length} tokens); raise backbone.max_target_length")
            self.items.append({"input_ids": ids, "cand_ids": cands, "label": -1 if e.label is None else e.label,
                               "value": e.value, "example_id": i})
        for what, n in self.truncated.items():
            if n:
                limit = max_input_length if what == "inputs" else max_target_length
                kind = "inputs" if what == "inputs" else "distinct answers"
                warnings.warn(f"task {name!r}: {n} of {total[what]} {kind} longer than {limit} tokens were truncated",
                              TruncationWarning, stacklevel=2)
        if sort_by_length:
            self.items.sort(key=lambda it: len(it["input_ids"]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class TextCollator:
    """Samples → a padded batch.

    Batch keys: ``input_ids``/``attention_mask`` ``(B, n)``, ``cand_ids``/``cand_mask`` ``(B, C, L)``
    (answers, padded with the pad id), ``class_mask`` ``(B, C)`` (True for a sample's real candidates),
    ``labels`` ``(B,)`` (-1 when unlabelled), ``values`` ``(B,)`` (NaN unless regression),
    ``task_ids``, ``indices``, ``example_ids``.
    """

    def __init__(self, pad_id: int = 0):
        self.pad_id = pad_id

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        b = len(samples)
        n = max(len(s["input_ids"]) for s in samples)
        c = max(len(s["cand_ids"]) for s in samples)
        l = max(len(x) for s in samples for x in s["cand_ids"])
        ids = torch.full((b, n), self.pad_id, dtype=torch.long)
        att = torch.zeros((b, n), dtype=torch.long)
        cand = torch.full((b, c, l), self.pad_id, dtype=torch.long)
        cmask = torch.zeros((b, c, l), dtype=torch.bool)
        for i, s in enumerate(samples):
            ids[i, : len(s["input_ids"])] = torch.tensor(s["input_ids"])
            att[i, : len(s["input_ids"])] = 1
            for j, x in enumerate(s["cand_ids"]):
                cand[i, j, : len(x)] = torch.tensor(x)
                cmask[i, j, : len(x)] = True
        return {
            "input_ids": ids,
            "attention_mask": att,
            "cand_ids": cand,
            "cand_mask": cmask,
            "class_mask": cmask.any(-1),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.long),
            "values": torch.tensor([float("nan") if s["value"] is None else s["value"] for s in samples]),
            "task_ids": torch.tensor([s["task_id"] for s in samples], dtype=torch.long),
            "indices": torch.tensor([s.get("index", i) for i, s in enumerate(samples)], dtype=torch.long),
            "example_ids": torch.tensor([s["example_id"] for s in samples], dtype=torch.long),
        }
