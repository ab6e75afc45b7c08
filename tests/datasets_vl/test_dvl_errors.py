"""Bad input gives clear errors naming the class / path."""

from __future__ import annotations

import json

import pytest
from dvl_helpers import make_tree

from datasets_vl import ConfigError, DataError, load_task, make_spec


def _coop(tmp_path, rows, name="split_zhou_X.json"):
    make_tree(tmp_path / "images", {"cat": 2, "dog": 2})
    (tmp_path / name).write_text(json.dumps(rows))
    return {"name": "x", "source": "coop_split", "root": str(tmp_path), "image_dir": "images", "split_file": name}


def test_split_paths_outside_the_image_root_are_refused(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    for bad in ["../secret.png", "cat/../../secret.png", str(tmp_path / "secret.png")]:
        spec = _coop(tmp_path, {"train": [[bad, 0, "cat"]], "test": [["cat/cat_000.png", 0, "cat"]]})
        with pytest.raises(DataError, match="outside the image root|absolute"):
            load_task(spec)


def test_symlink_escaping_the_root_is_refused(tmp_path):
    spec = _coop(tmp_path, {"train": [["link/secret.png", 0, "cat"]], "test": [["cat/cat_000.png", 0, "cat"]]})
    (tmp_path / "outside").mkdir()
    (tmp_path / "images" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(DataError, match="outside the image root"):
        load_task(spec)


def test_label_outside_the_class_list(tmp_path):
    import datasets
    from dvl_helpers import write_image

    d = tmp_path / "hf"
    d.mkdir()
    img = str(write_image(tmp_path / "a.png"))
    for split, labels in (("train", [0, 1, 2]), ("test", [0, 1, 1])):  # plain ints, not a ClassLabel
        datasets.Dataset.from_dict({"image": [img] * 3, "label": labels},
                                   features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
                                   ).to_parquet(str(d / f"{split}.parquet"))
    spec = {"name": "x", "source": "hf", "root": str(d), "data_files": {"train": "train.parquet", "test": "test.parquet"}}
    with pytest.raises(DataError, match="has no class names"):
        load_task(spec)
    with pytest.raises(DataError, match=r"x/train: label\(s\) \[2\] outside the class list of 2 classes \(cat, dog\)"):
        load_task(dict(spec, classnames=["cat", "dog"]))
    assert load_task(dict(spec, classnames=["cat", "dog", "fish"])).splits["test"].labels == [0, 1, 1]
    # A split file's classnames override must match its number of classes.
    spec = _coop(tmp_path, {"train": [["cat/cat_000.png", 0, "cat"], ["dog/dog_000.png", 1, "dog"]],
                            "test": [["dog/dog_001.png", 1, "dog"]]})
    with pytest.raises(DataError, match="classnames has 1 names, the split file has 2 classes"):
        load_task(dict(spec, classnames=["cat"]))


def test_label_gap_and_inconsistent_names(tmp_path):
    spec = _coop(tmp_path, {"train": [["cat/cat_000.png", 0, "cat"], ["dog/dog_000.png", 2, "dog"]],
                            "test": [["dog/dog_001.png", 2, "dog"]]})
    with pytest.raises(DataError, match=r"label\(s\) \[1\] have no examples"):
        load_task(spec)
    spec = _coop(tmp_path, {"train": [["cat/cat_000.png", 0, "cat"], ["dog/dog_000.png", 0, "dog"]],
                            "test": [["dog/dog_001.png", 0, "cat"]]})
    with pytest.raises(DataError, match="label 0 is named both 'cat' and 'dog'"):
        load_task(spec)


def test_empty_class_folder_is_named(tmp_path):
    make_tree(tmp_path / "t", {"cat": 3, "dog": 3})
    (tmp_path / "t" / "ghost").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) \['ghost'\] contain no images"):
        load_task({"name": "t", "source": "imagefolder", "root": str(tmp_path / "t")})


def test_empty_class_in_train_split_is_named(tmp_path):
    spec = _coop(tmp_path, {"train": [["cat/cat_000.png", 0, "cat"]], "test": [["dog/dog_001.png", 1, "dog"]]})
    with pytest.raises(DataError, match=r"x/train: class\(es\) \['dog'\] have no examples"):
        load_task(spec)


def test_duplicate_class_names(tmp_path):
    make_tree(tmp_path / "t", {"cat": 3, "dog": 3})
    with pytest.raises(DataError, match=r"duplicate class name\(s\) \['cat'\]"):
        load_task({"name": "t", "source": "imagefolder", "root": str(tmp_path / "t"), "classnames": ["Cat", "cat "]})


def test_test_class_not_in_train(tmp_path):
    make_tree(tmp_path / "d" / "train", {"cat": 2})
    make_tree(tmp_path / "d" / "test", {"cat": 1, "cow": 1})
    with pytest.raises(DataError, match=r"class folder\(s\) \['cow'\] are not in the train split"):
        load_task({"name": "d", "source": "imagefolder", "root": str(tmp_path / "d")})


def test_spec_validation():
    with pytest.raises(ConfigError, match="did you mean 'max_answers'"):
        make_spec({"name": "v", "max_answer": 10})
    with pytest.raises(ConfigError, match="no '{}' slot"):
        make_spec({"name": "v", "templates": ["a photo."]})
    with pytest.raises(ConfigError, match="expected one of"):
        make_spec({"name": "v", "source": "zip"})
    with pytest.raises(ConfigError, match=r"vqa_files.train needs keys \['annotations'\]"):
        make_spec({"name": "v", "vqa_files": {"train": {"questions": "q.json"}}})


def test_vqa_question_without_annotation(tmp_path):
    from dvl_helpers import make_vqa

    files = make_vqa(tmp_path, "train", [("a.png", "q?", ["yes"] * 10)])
    (tmp_path / "train_a.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="question 0 has no annotation"):
        load_task({"name": "v", "source": "vqav2", "root": str(tmp_path), "vqa_files": {"train": files, "test": files}})
