"""Every source type loads, lazily, into the sample format of the contract."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from dvl_helpers import make_tree, make_vqa, write_image

from datasets_vl import DATASETS, DatasetNotFoundError, load_task
from datasets_vl.errors import ConfigError


def _check_sample(s, task_type="classification"):
    assert isinstance(s["image"], torch.Tensor) and s["image"].dtype == torch.float32 and s["image"].shape == (3, 16, 16)
    assert isinstance(s["label"], int)
    if task_type == "classification":
        assert s["question"] is None and s["answer_scores"] is None
    else:
        assert isinstance(s["question"], str) and isinstance(s["answer_scores"], dict)


def test_imagefolder_single_tree_is_split_deterministically(tmp_path, small_tf):
    make_tree(tmp_path / "pets", {"cat": 10, "dog": 10, "fish_tank": 5})
    task = load_task({"name": "pets", "source": "imagefolder", "root": str(tmp_path / "pets")}, small_tf[1])
    assert task.task_type == "classification"
    assert task.classnames == ["cat", "dog", "fish tank"]  # underscores read as spaces
    tr, te = task.splits["train"], task.splits["test"]
    assert (len(tr), len(te)) == (20, 5)  # round(10*0.2)=2, round(5*0.2)=1 per class
    assert sorted(te.labels) == [0, 0, 1, 1, 2]
    assert not set(tr.image_refs) & set(te.image_refs)
    again = load_task({"name": "pets", "source": "imagefolder", "root": str(tmp_path / "pets")}, small_tf[1])
    assert list(again.splits["test"].image_refs) == list(te.image_refs)
    _check_sample(tr[0])
    assert task.templates == ["a photo of a {}."]


def test_imagefolder_with_split_dirs_and_classnames_file(tmp_path, small_tf):
    make_tree(tmp_path / "d" / "train", {"n01": 3, "n02": 3})
    make_tree(tmp_path / "d" / "test", {"n01": 2, "n02": 1})
    (tmp_path / "d" / "classnames.txt").write_text("n01 goldfish\nn02 great white shark\n")
    task = load_task({"name": "tiny", "source": "imagefolder", "root": str(tmp_path / "d")}, small_tf[1])
    assert task.classnames == ["goldfish", "great white shark"]
    assert (len(task.splits["train"]), len(task.splits["test"])) == (6, 3)
    assert task.splits["test"].labels == [0, 0, 1]


def _hf_split(tmp_path: Path, rows: int, names: list[str]) -> datasets.Dataset:
    paths = [str(write_image(tmp_path / "src" / f"{i}.png", (i * 10 % 255, 0, 0), mode="L" if i % 2 else "RGB"))
             for i in range(rows)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": paths, "label": [i % len(names) for i in range(rows)]}, features=feats)


def test_hf_local_parquet(tmp_path, small_tf):
    names = ["apple", "pear", "plum"]
    d = tmp_path / "fruit"
    d.mkdir()
    _hf_split(tmp_path, 9, names).to_parquet(str(d / "train.parquet"))
    _hf_split(tmp_path, 6, names).to_parquet(str(d / "test.parquet"))
    spec = {"name": "fruit", "source": "hf", "root": str(d),
            "data_files": {"train": "train.parquet", "test": "test.parquet"}}
    task = load_task(spec, small_tf[1])
    assert task.classnames == names
    assert task.splits["train"].labels == [0, 1, 2] * 3
    assert len(task.splits["test"]) == 6
    for i in range(2):  # RGB and grey (mode L) images both come out 3-channel
        _check_sample(task.splits["train"][i])


def test_hf_imagefolder_builder(tmp_path, small_tf):
    make_tree(tmp_path / "hfdir" / "train", {"cat": 3, "dog": 2})
    make_tree(tmp_path / "hfdir" / "test", {"cat": 1, "dog": 1})
    task = load_task({"name": "hfif", "source": "hf", "root": str(tmp_path), "data_dir": "hfdir"}, small_tf[1])
    assert task.classnames == ["cat", "dog"]
    assert sorted(task.splits["train"].labels) == [0, 0, 0, 1, 1]
    _check_sample(task.splits["test"][1])


def test_coop_split_file(tmp_path, small_tf):
    make_tree(tmp_path / "images", {"cat": 4, "dog": 4})
    split = {
        "train": [[f"cat/cat_{i:03d}.png", 0, "cat"] for i in range(3)] + [[f"dog/dog_{i:03d}.png", 1, "dog"] for i in range(3)],
        "val": [["cat/cat_003.png", 0, "cat"]],
        "test": [["dog/dog_003.png", 1, "dog"]],
    }
    (tmp_path / "split_zhou_Toy.json").write_text(json.dumps(split))
    task = load_task({"name": "toy", "source": "coop_split", "root": str(tmp_path), "image_dir": "images",
                      "split_file": "split_zhou_Toy.json"}, small_tf[1])
    assert task.classnames == ["cat", "dog"]
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 6, "val": 1, "test": 1}
    _check_sample(task.splits["val"][0])


def test_vqav2_layout(tmp_path, small_tf):
    ten = lambda *pairs: [a for a, n in pairs for _ in range(n)]  # noqa: E731
    train = make_vqa(tmp_path, "train", [
        ("a.png", "what color?", ten(("red", 8), ("Red.", 1), ("blue", 1))),
        ("b.png", "how many?", ten(("two", 5), ("2", 2), ("3", 3))),
        ("c.png", "what animal?", ten(("a dog", 6), ("cat", 4))),
        ("a.png", "is it red?", ten(("yes", 10))),
    ])
    test = make_vqa(tmp_path, "test", [("d.png", "what is it?", ten(("zebra", 10)))])
    task = load_task({"name": "myvqa", "source": "vqav2", "root": str(tmp_path), "max_answers": 4,
                      "vqa_files": {"train": train, "test": test}}, small_tf[1])
    assert task.task_type == "vqa"
    # consensus answers red, 2, dog, yes: all count 1 → alphabetical
    assert task.classnames == ["2", "dog", "red", "yes"]
    tr = task.splits["train"]
    s = tr[1]
    _check_sample(s, "vqa")
    assert s["question"] == "how many?"
    assert s["answer_scores"] == {0: 1.0}  # "two" and "2" are the same answer (7 humans)
    assert tr[0]["answer_scores"] == {2: 1.0}  # red: 8 + "Red." normalised; blue outside the vocab
    assert tr[2]["answer_scores"] == {1: 1.0}
    assert tr.labels == [2, 0, 1, 3]
    assert task.splits["test"].labels == [-1]  # zebra not in the vocabulary
    assert task.splits["test"][0]["answer_scores"] == {}
    assert task.templates[0] == "question: {question} answer: {}."


def test_vqav2_answer_vocab_file(tmp_path, small_tf):
    items = [("a.png", "q?", ["yes"] * 10), ("b.png", "q?", ["no"] * 2 + ["yes"] * 8)]
    files = make_vqa(tmp_path, "train", items)
    (tmp_path / "vocab.json").write_text(json.dumps(["no", "yes", "maybe"]))
    task = load_task({"name": "v", "source": "vqav2", "root": str(tmp_path), "answer_vocab_file": "vocab.json",
                      "vqa_files": {"train": files, "test": files}}, small_tf[1])
    assert task.classnames == ["no", "yes", "maybe"]
    assert task.splits["train"].answer_scores[1] == {0: pytest.approx(2 / 3), 1: 1.0}


def test_easy_vqa_tasks(small_tf):
    vqa = load_task("easy_vqa", small_tf[1])
    assert vqa.task_type == "vqa" and len(vqa.classnames) == 13
    assert {k: len(v) for k, v in vqa.splits.items()} == {"train": 38575, "test": 9673}
    s = vqa.splits["train"][0]
    _check_sample(s, "vqa")
    assert s["question"] == "what is the blue shape?"
    assert vqa.classnames[s["label"]] == "rectangle" and s["answer_scores"] == {s["label"]: 1.0}

    shape = load_task("easy_vqa_shape", small_tf[1])
    assert shape.classnames == ["circle", "rectangle", "triangle"]
    assert len(shape.splits["train"]) > 3600 and all(c > 1000 for c in shape.splits["train"].class_counts())
    # image 0 of the train split: "what is the blue shape?" → rectangle
    assert Path(shape.splits["train"].image_refs[0]).name == "0.png" and shape.splits["train"].labels[0] == 1
    color = load_task("easy_vqa_color", small_tf[1])
    assert color.classnames[color.splits["train"].labels[0]] == "blue"
    assert len(color.classnames) == 8 and min(color.splits["test"].class_counts()) > 30
    _check_sample(color.splits["test"][0])


def test_easy_vqa_derived_labels_agree_with_open_questions():
    import easy_vqa

    from datasets_vl.sources.easyvqa import SHAPES, image_attributes

    qs, ans, ids = easy_vqa.get_test_questions()
    attrs = image_attributes(qs, ans, ids)
    for q, a, im in zip(qs, ans, ids):
        if q.startswith("what shape") and "shape" in attrs[im]:
            assert attrs[im]["shape"] == a
        if q.startswith("what color") and "color" in attrs[im]:
            assert attrs[im]["color"] == a
    assert all(attrs[im].get("shape") in (None, *SHAPES) for im in attrs)


def test_digits(small_tf):
    task = load_task("digits", small_tf[1])
    assert task.classnames[:3] == ["zero", "one", "two"] and len(task.classnames) == 10
    assert (len(task.splits["train"]), len(task.splits["test"])) == (1437, 360)
    assert task.splits["test"].class_counts() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    _check_sample(task.splits["train"][5])
    assert task.templates == ["a photo of the digit {}."]
    again = load_task("digits", small_tf[1])
    assert again.splits["test"].labels == task.splits["test"].labels


def test_registry_name_with_local_parquet_root(tmp_path, small_tf):
    d = tmp_path / "flowers5"
    d.mkdir()
    names = ["daisy", "dandelion"]
    _hf_split(tmp_path, 4, names).to_parquet(str(d / "train.parquet"))
    _hf_split(tmp_path, 2, names).to_parquet(str(d / "test.parquet"))
    task = load_task("flowers5", small_tf[1], root=tmp_path)
    assert task.classnames == names and task.templates == ["a photo of a {}, a type of flower."]
    assert "a photo of a {}, a type of flower." in task.ensemble_templates


def test_registry_lookup_is_forgiving_and_unknown_names_suggest(tmp_path):
    from datasets_vl import lookup

    assert lookup("OxfordPets").name == "oxford_pets" and lookup("FGVC-Aircraft").name == "fgvc_aircraft"
    for n in ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
              "sun397", "dtd", "eurosat", "ucf101", "cifar10", "cifar100", "mnist", "fashion_mnist", "vqav2"]:
        assert n in DATASETS
    with pytest.raises(ConfigError, match="did you mean 'oxford_flowers'"):
        load_task("oxford_flower", root=tmp_path)


def test_missing_files_say_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv("MVLPT_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as e:
        load_task("eurosat", root=tmp_path)
    msg = str(e.value)
    assert f"{tmp_path}/eurosat/" in msg and "EuroSAT.zip" in msg and "split_zhou_EuroSAT.json" in msg
    with pytest.raises(DatasetNotFoundError, match="allow_download: true"):
        load_task("cifar10", root=tmp_path)
    monkeypatch.setenv("MVLPT_DATA", str(tmp_path / "env_root"))
    with pytest.raises(FileNotFoundError, match="env_root/vqav2/"):
        load_task("vqav2")


def test_shared_data_by_name(shared_dir, small_tf):
    for name, n_cls in [("flowers5", 5), ("sign_digits", 10), ("caltech101", 100)]:
        task = load_task(name, small_tf[1], root=shared_dir)
        assert len(task.classnames) == n_cls
        _check_sample(task.splits["test"][0])
    mnist = load_task("mnist", small_tf[1], root=shared_dir)
    assert mnist.classnames[0] == "zero" and len(mnist.splits["train"]) == 20000


def test_registry_layouts_imagenet_and_eurosat(tmp_path, small_tf):
    make_tree(tmp_path / "imagenet" / "images" / "train", {"n01": 2, "n02": 2})
    make_tree(tmp_path / "imagenet" / "images" / "val", {"n01": 1, "n02": 1})
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01 tench\nn02 goldfish\n")
    inet = load_task("ImageNet", small_tf[1], root=tmp_path)
    assert inet.classnames == ["tench", "goldfish"] and set(inet.splits) == {"train", "test"}
    assert inet.splits["test"].labels == [0, 1]

    make_tree(tmp_path / "eurosat" / "2750", {"AnnualCrop": 2, "SeaLake": 2})
    rows = lambda i: [[f"AnnualCrop/AnnualCrop_{i:03d}.png", 0, "AnnualCrop"], [f"SeaLake/SeaLake_{i:03d}.png", 1, "SeaLake"]]  # noqa: E731
    (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").write_text(json.dumps({"train": rows(0), "val": [], "test": rows(1)}))
    euro = load_task("EuroSAT", small_tf[1], root=tmp_path)
    assert euro.classnames == ["Annual Crop Land", "Sea or Lake"]  # CoOp's readable names
    assert euro.templates == ["a centered satellite photo of {}."]
    _check_sample(euro.splits["test"][1])
