"""Data integrity (issue 14, item 3): unreadable evaluation images are skipped and counted, never
replaced; too many is an error as soon as it happens; K larger than a class is an error (or, on
request, the largest K available); own image folders split by content, refuse one class and a
class with one image."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from dvl_helpers import make_tree
from torch.utils.data import DataLoader

from datasets_vl import DataError, apply_few_shot, collate_vl, load_task


def _cut(path: Path) -> None:
    """A truncated PNG: the file cut to half its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _folder(root: Path, counts: dict[str, int], name: str = "t", **spec) -> dict:
    make_tree(root, counts)
    return {"name": name, "source": "imagefolder", "root": str(root), **spec}


def test_eval_split_skips_truncated_images_and_counts_them(tmp_path, small_tf):
    task = load_task(_folder(tmp_path / "t", {"cat": 10, "dog": 10}, test_fraction=0.5,
                             max_unreadable_fraction=0.5), small_tf[1])
    test = task.splits["test"].for_eval()
    bad = [Path(test.image_refs[i]) for i in (1, 2)]
    for p in bad:
        _cut(p)
    sample = test[1]
    assert sample["unreadable"] and sample["label"] == test.labels[1]  # a placeholder, not the neighbour
    scored, labels = 0, []
    for batch in DataLoader(test, batch_size=4, collate_fn=collate_vl):
        scored += batch["images"].shape[0]
        labels += batch["labels"].tolist()
    assert scored == len(test) - 2  # n = images actually scored
    assert labels == [y for i, y in enumerate(test.labels) if i not in (1, 2)]
    with pytest.warns(RuntimeWarning, match=r"skipped 2 unreadable image\(s\) of 10 .*not scored"):
        rep = test.report_unreadable()
    assert rep["unreadable"] == 2 and sorted(rep["files"]) == sorted(map(str, bad))
    assert task.splits["test"][1].get("unreadable") is None  # training-style splits still replace


def test_batch_of_only_unreadable_images_is_kept_but_unscored(tmp_path, small_tf):
    from mvlpt.clip.scoring import make_records

    task = load_task(_folder(tmp_path / "t", {"cat": 4, "dog": 4}, test_fraction=0.5,
                             max_unreadable_fraction=0.9), small_tf[1])
    test = task.splits["test"].for_eval()
    for ref in test.image_refs[:2]:
        _cut(Path(ref))
    batch = collate_vl([test[0], test[1]])
    assert batch["images"].shape == (2, 3, 16, 16) and batch["unscored"].tolist() == [True, True]
    assert len(batch["skipped"]) == 2
    layout = type("L", (), {"columns": lambda self, k: slice(0, 2), "tasks": None})()
    assert make_records(layout, batch, torch.zeros(2, 2)) == []


def test_too_many_unreadable_is_an_error_at_once(tmp_path, small_tf):
    task = load_task(_folder(tmp_path / "t", {"cat": 75, "dog": 75}, test_fraction=0.5), small_tf[1])
    test = task.splits["test"].for_eval()
    for ref in test.image_refs[::2]:  # half of the test images truncated
        _cut(Path(ref))
    with pytest.raises(DataError, match=r"t/test: skipped 1 unreadable image\(s\) of 76 .*More than 1%"):
        for i in range(len(test)):
            test[i]


def test_k_larger_than_the_smallest_class_names_task_class_and_count(tmp_path, small_tf):
    task = load_task(_folder(tmp_path / "t", {"cat": 40, "dog": 30}, name="pets"), small_tf[1])
    with pytest.raises(DataError, match=r"pets: K=32 shots per class, but its smallest class 1 \('dog'\) has only 24 "
                                        r"training example\(s\).*use K <= 24, or if_too_few='largest'"):
        apply_few_shot(task, 32, seed=1)
    low = apply_few_shot(task, 32, seed=1, if_too_few="largest")
    assert low.meta["few_shot"]["k"] == 24 and low.meta["few_shot"]["k_requested"] == 32
    assert Counter(low.splits["train"].labels) == {0: 24, 1: 24}


def test_split_is_seeded_by_the_files_not_the_dataset_name(tmp_path, small_tf):
    spec = _folder(tmp_path / "a", {"cat": 20, "dog": 20})
    tests = []
    for name, root in (("first", tmp_path / "a"), ("second", tmp_path / "a"), ("moved", tmp_path / "b")):
        if not root.exists():
            shutil.copytree(tmp_path / "a", root)
        task = load_task({**spec, "name": name, "root": str(root)}, small_tf[1])
        test = task.splits["test"]
        tests.append(sorted(Path(test.file_name(i)).relative_to(root).as_posix() for i in range(len(test))))
    assert tests[0] == tests[1] == tests[2]
    assert len(tests[0]) == 8


def test_one_class_folder_is_refused(tmp_path, small_tf):
    with pytest.raises(DataError, match=r"only one class folder \('cat'\).*needs at least 2 classes"):
        load_task(_folder(tmp_path / "t", {"cat": 5}), small_tf[1])


def test_class_with_a_single_image_is_refused(tmp_path, small_tf):
    with pytest.raises(DataError, match=r"class folder\(s\) 'dog' \(1 image\).*have a single image.*at least 2"):
        load_task(_folder(tmp_path / "t", {"cat": 5, "dog": 1}), small_tf[1])


def test_class_without_test_images_in_a_test_folder_is_refused(tmp_path, small_tf):
    make_tree(tmp_path / "t" / "train", {"cat": 3, "dog": 3})
    make_tree(tmp_path / "t" / "test", {"cat": 2})
    with pytest.raises(DataError, match=r"t/test: class\(es\) \['dog'\] have no examples"):
        load_task({"name": "t", "source": "imagefolder", "root": str(tmp_path / "t")}, small_tf[1])
