"""Corrupt/unreadable images are skipped, counted, reported once; too many is an error."""

from __future__ import annotations

import warnings

import pytest
import torch
from dvl_helpers import make_tree
from torch.utils.data import DataLoader

from datasets_vl import DataError, UnreadableTracker, VLDataset, absorb_skipped, apply_few_shot, collate_vl, load_task


def _corrupt(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _task(tmp_path, tf, counts=None, max_fraction=0.01):
    make_tree(tmp_path / "t", counts or {"cat": 150, "dog": 150})
    return load_task({"name": "t", "source": "imagefolder", "root": str(tmp_path / "t"), "test_fraction": 0.5,
                      "max_unreadable_fraction": max_fraction}, tf)


def test_corrupt_image_is_replaced_counted_and_reported_once(tmp_path, small_tf):
    task = _task(tmp_path, small_tf[1])
    ds = task.splits["train"]
    bad = ds.image_refs[3]
    _corrupt(__import__("pathlib").Path(bad))
    samples = [ds[i] for i in range(len(ds))]  # one full epoch: no exception
    assert len(samples) == len(ds)
    assert samples[3]["label"] == ds.labels[4]  # replaced by the next readable row
    assert samples[3]["skipped"][0]["file"] == bad
    ds[3]  # seen twice: still one file
    with pytest.warns(RuntimeWarning, match=r"skipped 1 unreadable image\(s\) of 150") as rec:
        rep = ds.report_unreadable()
    assert bad in str(rec[0].message)
    assert rep["unreadable"] == 1 and rep["skips"] == 2 and list(rep["files"]) == [bad]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds.report_unreadable()["unreadable"] == 0  # reset after the report


def test_truncated_file_over_one_percent_is_an_error(tmp_path, small_tf):
    task = _task(tmp_path, small_tf[1])
    ds = task.splits["train"]
    for i in (0, 100):
        _truncate(__import__("pathlib").Path(ds.image_refs[i]))
    with pytest.raises(DataError, match=r"2 unreadable image\(s\) of 150 \(1.33%\).*More than 1%"):
        for i in range(len(ds)):  # raised as soon as the second file fails, not only at the report
            ds[i]


def test_threshold_is_configurable(tmp_path, small_tf):
    make_tree(tmp_path / "t", {"cat": 5, "dog": 5})
    task = load_task({"name": "t", "source": "imagefolder", "root": str(tmp_path / "t"),
                      "max_unreadable_fraction": 0.5}, small_tf[1])
    ds = task.splits["test"]
    _corrupt(__import__("pathlib").Path(ds.image_refs[0]))
    [ds[i] for i in range(len(ds))]
    with pytest.warns(RuntimeWarning):
        assert ds.report_unreadable()["unreadable"] == 1


def test_missing_file_counts_as_unreadable_and_all_unreadable_raises(tmp_path, small_tf):
    ds = VLDataset("gone", "classification", ["a"], [str(tmp_path / "nope.png")] * 3, [0, 0, 0], transform=small_tf[1],
                   max_unreadable_fraction=0.99)
    with pytest.raises(DataError, match="none of its 3 images could be decoded"):
        ds[0]


def test_subset_replaces_within_subset_and_has_its_own_counter(tmp_path, small_tf):
    task = _task(tmp_path, small_tf[1], {"cat": 20, "dog": 20}, max_fraction=0.5)
    fs = apply_few_shot(task, 4, seed=0)
    tr, val = fs.splits["train"], fs.splits["val"]
    _corrupt(__import__("pathlib").Path(tr.parent.image_refs[tr.indices[0]]))
    s = tr[0]
    assert s["label"] == tr.labels[1]
    assert len(tr.unreadable) == 1 and len(val.unreadable) == 0


def test_dataloader_workers_report_back_through_the_batch(tmp_path, small_tf):
    task = _task(tmp_path, small_tf[1], {"cat": 8, "dog": 8}, max_fraction=0.5)
    ds = task.splits["train"]
    bad = ds.image_refs[2]
    _corrupt(__import__("pathlib").Path(bad))
    tracker = UnreadableTracker("t", 0.5)
    n = 0
    for batch in DataLoader(ds, batch_size=4, num_workers=1, collate_fn=collate_vl):
        n += batch["images"].shape[0]
        absorb_skipped(batch, {0: tracker})
    assert n == len(ds)
    assert len(ds.unreadable) == 0  # the worker's counter is not the main process's...
    assert dict(tracker.counts) == {bad: 1}  # ...but the batch carried the skip back
    for batch in DataLoader(ds, batch_size=4, num_workers=0, collate_fn=collate_vl):
        absorb_skipped(batch, tracker)  # in-process skips are not double-counted
    assert dict(tracker.counts) == {bad: 1} and len(ds.unreadable) == 1
    assert batch["images"].dtype == torch.float32
