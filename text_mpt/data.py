"""Task data: loading with ``datasets`` (hub or local files), the train / val / test split used
for model selection, few-shot sampling, tokenisation, collation.

Parts (:func:`task_parts`, rules in :class:`~text_mpt.config.SelectionConfig`): ``train``
(optimised), ``val`` (periodic evaluation and best-checkpoint selection) and ``test`` (reported).
With ``selection.mode: auto`` a small task (train split under ``small_threshold`` rows) halves its
eval split into val/test with ``selection.seed``; a large task holds ``val_size`` seeded train rows
out as val and reports on the full eval split. Every example keeps an id ``"<split>:<row>"`` (row =
line of the source split; ``"<split>:<row>.<j>"`` for the j-th example of an expanded row).
Order of operations per task: split rows → format → caps (``max_train_examples`` on train with
``train.seed``; ``max_eval_examples`` on val and on test each, with ``selection.seed``) →
``few_shot_k`` on train.

Batching: training batches are drawn by the core's mixed-task sampler and padded
dynamically here (to the longest input / answer of the batch). Evaluation datasets are
sorted by input length (``sort_by_length``) so that consecutive evaluation batches
hold similar lengths: length-bucketed batches with little padding.
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from mvlpt.core.errors import ConfigError, DataError
from mvlpt.core.sampling import check_if_too_few

from .config import SelectionConfig, TaskConfig
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


def _subsample_index(n_items: int, n: int, seed: int) -> list[int]:
    if n <= 0 or n >= n_items:
        return list(range(n_items))
    return sorted(random.Random(seed).sample(range(n_items), n))


def _label_name(examples: Sequence[Example], ids: Sequence[int], lab: int) -> str:
    if lab < 0:
        return "(unlabelled)"
    cands = examples[ids[0]].candidates
    return f"{lab} ({cands[lab]!r})" if 0 <= lab < len(cands) else str(lab)


def _few_shot_index(examples: Sequence[Example], k: int, seed: int, name: str = "task",
                    if_too_few: str = "error", short_out: dict[str, int] | None = None) -> list[int]:
    """``k`` indices per gold label. A label with fewer than ``k`` examples is a :class:`DataError`
    naming the task, that label and its count (``if_too_few="error"``); ``"largest"`` lowers ``k`` to
    that count for every label; ``"all"`` gives the short labels all their examples (Dassl's few-shot
    sampler, which CoOp uses). ``short_out`` receives ``{label name: count}`` of the short labels."""
    check_if_too_few(if_too_few, "few_shot_if_too_few")
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[-1 if ex.label is None else ex.label].append(i)
    short = {lab: ids for lab, ids in by_label.items() if len(ids) < k}
    if short_out is not None and if_too_few != "error":
        short_out.update({_label_name(examples, ids, lab): len(ids) for lab, ids in sorted(short.items())})
    if short and if_too_few != "all":
        lab = min(short, key=lambda x: (len(short[x]), x))
        n = len(short[lab])
        if if_too_few == "error":
            raise DataError(f"task {name!r}: few_shot_k={k} examples per label, but label {_label_name(examples, short[lab], lab)} "
                            f"has only {n} training example(s) ({len(short)} of {len(by_label)} labels have fewer than {k}; "
                            f"counted after the val hold-out and max_train_examples); use few_shot_k <= {n}, or "
                            f"few_shot_if_too_few=all (the short labels give all their examples) or =largest (K={n} for all)")
        k = n
    rng = random.Random(seed)
    keep: list[int] = []
    for lab in sorted(by_label):
        ids = by_label[lab]
        keep += rng.sample(ids, min(k, len(ids)))
    return sorted(keep)


def subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn without replacement (all when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(examples):
        return examples
    return [examples[i] for i in _subsample_index(len(examples), n, seed)]


def few_shot(examples: list[Example], k: int, seed: int, name: str = "task", if_too_few: str = "error") -> list[Example]:
    """``k`` examples per gold class (every class present is kept; a class with fewer: see ``if_too_few``
    of :func:`_few_shot_index`)."""
    return [examples[i] for i in _few_shot_index(examples, k, seed, name, if_too_few)]


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


#: the parts :func:`task_parts` can build (``dev`` = the full eval split, for ``text-mpt eval``)
PARTS = ("train", "val", "test", "dev")


@dataclass
class TaskParts:
    """One task's examples split into parts for model selection.

    Attributes:
        name: task name.
        rule: ``small`` (eval split halved into val / test), ``large`` (val held out from the train
            split, test = the eval split), ``dev`` (legacy: val = test = the eval split) or ``none``
            (no val; test = the eval split).
        examples: part → examples (only the parts asked for).
        ids: part → example ids (``"<split>:<row>"``), aligned with ``examples``.
        info: how the split was made (rule, seed, source splits, row and example counts); saved in
            the run's ``config.json`` meta.
    """

    name: str
    rule: str
    examples: dict[str, list[Example]] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def split_names(tc: TaskConfig, data_root: str | None = None) -> tuple[str, str]:
    """The ``(train, eval)`` split names a task loads (local file names or hub split names)."""
    spec = task_spec(tc)
    local = bool(tc.data_files or tc.path or (data_root and spec.local_dir))
    return _split_name(tc, spec, "train", local), _split_name(tc, spec, "eval", local)


def _format_rows(spec: TaskSpec, rows: Sequence[dict[str, Any]], indices: Sequence[int], split: str,
                 task: str) -> tuple[list[Example], list[str]]:
    exs: list[Example] = []
    ids: list[str] = []
    for i in indices:
        flats = list(spec.rows(rows[i]))
        for j, flat in enumerate(flats):
            try:
                exs.append(spec.example(flat))
            except DataError as e:
                raise DataError(f"task {task!r} ({split} split): row {i}: {e}") from None
            ids.append(f"{split}:{i}" if len(flats) == 1 else f"{split}:{i}.{j}")
    return exs, ids


def describe_split(info: dict[str, Any]) -> str:
    """One line saying how a task's val and test parts were made (for results and logs)."""
    r, ev, seed = info["rule"], info["eval_split"], info["seed"]
    if r == "small":
        return (f"small rule (train split has {info['train_rows']:,} rows < selection.small_threshold "
                f"{info['small_threshold']:,}): the {ev!r} split ({info['eval_rows']:,} rows) halved with seed {seed} "
                f"into val {info['val_rows']:,} rows (selection) / test {info['test_rows']:,} rows (reported)")
    if r == "large":
        return (f"large rule (train split has {info['train_rows']:,} rows >= selection.small_threshold "
                f"{info['small_threshold']:,}): {info['val_rows']:,} train rows held out with seed {seed} as val "
                f"(selection; not trained on); test = the full {ev!r} split ({info['test_rows']:,} rows, reported)")
    if r == "dev":
        return (f"selection.mode=dev (legacy, optimistic): best checkpoint selected AND reported on the full "
                f"{ev!r} split ({info['eval_rows']:,} rows)")
    return f"selection.mode=none: no model selection; last step reported on the full {ev!r} split ({info['eval_rows']:,} rows)"


def task_parts(tc: TaskConfig, selection: SelectionConfig | None = None, data_root: str | None = None,
               train_seed: int = 0, few_shot_k: int = 0, few_shot_seed: int = 0,
               parts: Sequence[str] = ("train", "val", "test"), few_shot_if_too_few: str = "error") -> TaskParts:
    """Split one task into ``train`` / ``val`` / ``test`` (and ``dev``, the full eval split) parts.

    The rule (see :class:`~text_mpt.config.SelectionConfig`) is chosen from the number of rows the
    train split originally has. Row splits are seeded with ``selection.seed``; then the caps apply
    (``max_train_examples`` with ``train_seed``, ``max_eval_examples`` on each of val / test / dev with
    ``selection.seed``) and ``few_shot_k`` (with ``few_shot_seed``, ``few_shot_if_too_few``) on train; the
    split info records the labels short of ``few_shot_k`` (``few_shot_short``). Only the parts in
    ``parts`` are formatted (the train split is still loaded to count its rows under ``mode: auto``).
    """
    sel = selection if selection is not None else SelectionConfig()
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ConfigError(f"unknown parts {bad}; choose from {list(PARTS)}")
    spec = task_spec(tc)
    name = spec.name
    train_name, eval_name = split_names(tc, data_root)
    if sel.mode == "none" and "val" in parts:
        raise ConfigError(f"task {name!r}: selection.mode=none has no val part")
    train_rows = load_rows(tc, "train", data_root) if (sel.mode == "auto" or "train" in parts) else None
    eval_rows = load_rows(tc, "eval", data_root)
    n_train = len(train_rows) if train_rows is not None else None
    n_eval = len(eval_rows)
    if not n_eval:
        raise DataError(f"task {name!r}: the {eval_name} split is empty")
    if n_train == 0:
        raise DataError(f"task {name!r}: the {train_name} split is empty")
    rule = sel.mode
    if rule == "auto":
        rule = "small" if n_train < sel.small_threshold else "large"  # type: ignore[operator]
    train_idx = list(range(n_train or 0))
    val_src: str | None = eval_name
    if rule == "small":
        if n_eval < 2:
            raise DataError(f"task {name!r}: the {eval_name} split has {n_eval} row; the small rule halves it into "
                            "val and test and needs at least 2 (or set selection.mode)")
        perm = random.Random(sel.seed).sample(range(n_eval), n_eval)
        val_idx, test_idx = sorted(perm[: n_eval // 2]), sorted(perm[n_eval // 2:])
    elif rule == "large":
        assert n_train is not None
        if n_train <= sel.val_size:
            raise DataError(f"task {name!r}: cannot hold out selection.val_size={sel.val_size} of the {n_train} "
                            f"{train_name} rows as val; lower selection.val_size, or raise selection.small_threshold "
                            f"above {n_train} to halve the {eval_name} split instead")
        held = set(random.Random(sel.seed).sample(range(n_train), sel.val_size))
        val_src, val_idx = train_name, sorted(held)
        train_idx = [i for i in train_idx if i not in held]
        test_idx = list(range(n_eval))
    elif rule == "dev":
        val_idx, test_idx = list(range(n_eval)), list(range(n_eval))
    else:  # none
        val_src, val_idx, test_idx = None, [], list(range(n_eval))

    info: dict[str, Any] = {"rule": rule, "mode": sel.mode, "seed": sel.seed, "train_split": train_name,
                            "eval_split": eval_name, "train_rows": n_train, "eval_rows": n_eval}
    if sel.mode == "auto":
        info["small_threshold"] = sel.small_threshold
    if rule == "large":
        info["val_size"] = sel.val_size
    info.update(val_from=val_src, val_rows=len(val_idx), test_from=eval_name, test_rows=len(test_idx),
                train_rows_used=len(train_idx) if train_rows is not None else None,
                max_train_examples=tc.max_train_examples, max_eval_examples=tc.max_eval_examples, few_shot_k=few_shot_k)
    info["description"] = describe_split(info)

    out = TaskParts(name, rule, info=info)
    sources = {"train": (train_rows, train_idx, train_name), "test": (eval_rows, test_idx, eval_name),
               "dev": (eval_rows, list(range(n_eval)), eval_name),
               "val": (train_rows if rule == "large" else eval_rows, val_idx, val_src or "")}
    for part in parts:
        rows, idx, split = sources[part]
        exs, ids = _format_rows(spec, rows, idx, split, name)  # type: ignore[arg-type]
        if part == "train":
            keep = _subsample_index(len(exs), tc.max_train_examples, train_seed)
            if few_shot_k > 0:
                short: dict[str, int] = {}
                keep = [keep[i] for i in _few_shot_index([exs[j] for j in keep], few_shot_k, few_shot_seed, name,
                                                         few_shot_if_too_few, short)]
                if short:  # the labels short of few_shot_k, and what was done about it
                    info["few_shot_short"] = short
                    info["few_shot_if_too_few"] = few_shot_if_too_few
        else:
            keep = _subsample_index(len(exs), tc.max_eval_examples, sel.seed)
        exs, ids = [exs[i] for i in keep], [ids[i] for i in keep]
        if not exs:
            raise DataError(f"task {name!r}: the {part} part is empty ({describe_split(info)})")
        out.examples[part], out.ids[part] = exs, ids
        info[f"{part}_examples"] = len(exs)
    return out


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
