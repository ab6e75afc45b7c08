"""Data part of the bad-input matrix, as a user meets it (issue 8)."""

import json

import pytest
from dvl_helpers import make_vqa

from datasets_vl import DataError, DatasetNotFoundError, load_task
from mvlpt.core import MultiTaskDataset


def test_vqa_annotations_file_missing(tmp_path):
    files = make_vqa(tmp_path, "train", [("a.png", "q?", ["yes"] * 10)])
    (tmp_path / "train_a.json").unlink()
    with pytest.raises((FileNotFoundError, DataError), match="train_a.json"):
        load_task({"name": "v", "source": "vqav2", "root": str(tmp_path), "vqa_files": {"train": files, "test": files}})


def test_vqa_file_without_annotations_key(tmp_path):
    files = make_vqa(tmp_path, "train", [("a.png", "q?", ["yes"] * 10)])
    (tmp_path / "train_a.json").write_text(json.dumps({"info": "no annotations here"}))
    with pytest.raises(DataError, match="annotations"):
        load_task({"name": "v", "source": "vqav2", "root": str(tmp_path), "vqa_files": {"train": files, "test": files}})


def test_missing_directory_says_the_expected_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_task("flowers5", root=str(tmp_path))
    assert "flowers5" in str(e.value) and "train.parquet" in str(e.value)


def test_empty_task_is_refused():
    with pytest.raises(DataError, match="task 1 has an empty dataset"):
        MultiTaskDataset([[{"x": 1}], []])
