"""VQA score rule, the batch format, transforms and templates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from datasets_vl import (
    best_label,
    build_transforms,
    build_vocab,
    collate_vl,
    format_prompt,
    load_task,
    make_spec,
    normalize_answer,
    preprocess_cfg,
    soft_scores,
    templates_for,
    transforms_for_model,
    vqa_accuracy,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


@pytest.mark.parametrize("n,score", [(1, 1 / 3), (2, 2 / 3), (3, 1.0), (4, 1.0), (10, 1.0)])
def test_vqa_score_rule(n, score):
    humans = ["yes"] * n + ["no"] * (10 - n)
    s = soft_scores(humans)
    assert s["yes"] == pytest.approx(score)
    assert s.get("no", 0.0) == pytest.approx(min((10 - n) / 3, 1.0))


def test_answer_normalisation_and_vocab():
    assert normalize_answer(" Two.") == "2" and normalize_answer("the dog") == "dog"
    assert normalize_answer("2.5") == "2.5" and normalize_answer("yes!") == "yes"
    assert soft_scores(["Dog", "dog", "a dog", "cat"]) == {"dog": 1.0, "cat": pytest.approx(1 / 3)}
    assert build_vocab(["b", "x", "b", "c", "x", "b", "d"], 2) == ["b", "x"]
    assert build_vocab(["z", "y"], 5) == ["y", "z"]  # ties alphabetical
    assert best_label({3: 0.6, 1: 1.0, 2: 1.0}) == 1 and best_label({}) == -1
    assert vqa_accuracy([1, 0, 5], [{1: 1.0}, {1: 1.0}, {5: 1 / 3}]) == pytest.approx((1 + 0 + 1 / 3) / 3)


def test_collate_mixed_classification_and_vqa_batch():
    img = torch.zeros(3, 8, 8)
    samples = [
        {"image": img, "label": 2, "question": None, "answer_scores": None, "task_id": 0, "index": 17},
        {"image": img + 1, "label": 1, "question": "what?", "answer_scores": {1: 1.0, 4: 1 / 3}, "num_answers": 6,
         "task_id": 1, "index": 3},
        None,
    ]
    b = collate_vl(samples)
    assert b["images"].shape == (2, 3, 8, 8) and b["images"].dtype == torch.float32
    assert b["labels"].tolist() == [2, 1] and b["labels"].dtype == torch.long
    assert b["task_ids"].tolist() == [0, 1] and b["indices"].tolist() == [17, 3]
    assert b["questions"] == [None, "what?"]
    assert b["answer_scores"].shape == (2, 6)
    assert b["answer_scores"][1].tolist() == pytest.approx([0, 1, 0, 0, 1 / 3, 0])
    assert b["answer_scores"][0].sum() == 0 and b["skipped"] == []
    plain = collate_vl([{"image": img, "label": 0, "question": None, "answer_scores": None}] * 3)
    assert "answer_scores" not in plain and plain["task_ids"].tolist() == [0, 0, 0] and plain["indices"].tolist() == [0, 1, 2]


def test_collate_with_real_vqa_and_classification_samples(small_tf):
    vqa = load_task("easy_vqa", small_tf[1])
    digits = load_task("digits", small_tf[1])
    samples = [dict(vqa.splits["test"][i], task_id=1, index=i) for i in range(3)]
    samples += [dict(digits.splits["test"][i], task_id=0, index=i) for i in range(2)]
    b = collate_vl(samples)
    assert b["answer_scores"].shape == (5, 13) and b["answer_scores"][3:].sum() == 0
    assert (b["answer_scores"][:3].argmax(1) == b["labels"][:3]).all()


def test_transforms_shapes_grey_and_augmentation():
    train, ev = build_transforms(32, train_augment=True)
    for mode in ("L", "RGB", "RGBA", "P", "I;16"):
        img = Image.new("RGB", (40, 20), (10, 200, 30)).convert(mode)
        assert ev(img).shape == (3, 32, 32) and train(img).shape == (3, 32, 32)
    grey = ev(Image.new("L", (8, 8), 128))
    assert torch.allclose(grey[0] * 0.26862954 + 0.48145466, grey[1] * 0.26130258 + 0.4578275, atol=1e-5)
    a, b = build_transforms(16, train_augment=False)
    assert a is b
    torch.manual_seed(0)
    img = Image.effect_noise((64, 64), 50).convert("RGB")
    assert not torch.equal(train(img), train(img))  # random crop/flip


def test_preprocess_from_open_clip_without_download():
    p = preprocess_cfg(model_name="ViT-B-32")
    assert p.size == 224 and p.interpolation == "bicubic" and p.mean[0] == pytest.approx(0.48145466)
    s = preprocess_cfg(model_name="ViT-B-16-SigLIP", pretrained="webli")
    assert s.mean == (0.5, 0.5, 0.5) and s.resize_mode == "squash"

    class Visual:  # what open_clip models expose as model.visual.preprocess_cfg
        preprocess_cfg = {"size": (64, 64), "mean": (0.1, 0.2, 0.3), "std": (1.0, 1.0, 1.0), "interpolation": "bilinear"}

    class Model:
        visual = Visual()

    p = preprocess_cfg(Model())
    assert (p.size, p.mean, p.interpolation) == (64, (0.1, 0.2, 0.3), "bilinear")
    _, ev = transforms_for_model(Model(), train_augment=False)
    assert ev(Image.new("RGB", (80, 70))).shape == (3, 64, 64)


def test_templates_and_overrides(small_tf):
    assert templates_for("oxford_flowers")[0] == ["a photo of a {}, a type of flower."]
    single, ens = templates_for("imagenet")
    assert single == ["a photo of a {}."] and len(ens) == 8 and "itap of a {}." in ens
    assert format_prompt("question: {question} answer: {}.", "red", "what color?") == "question: what color? answer: red."
    t = load_task({"name": "digits", "templates": ["a drawing of {}."]}, small_tf[1])
    assert t.templates == ["a drawing of {}."] and t.ensemble_templates == ["a drawing of {}."]
    t = load_task({"name": "digits", "ensemble_templates": ["{}.", "a {}."]}, small_tf[1])
    assert t.templates == ["a photo of the digit {}."] and t.ensemble_templates == ["{}.", "a {}."]


def test_example_configs_validate():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        spec = make_spec(yaml.safe_load(f.read_text())["dataset"])
        assert spec.name


def test_deterministic_transforms_decode_each_image_once(monkeypatch):
    """With the eval transform (also the train one without augmentation) a dataset keeps each transformed
    image; with random crops it transforms again at every read. The values are the same either way."""
    import datasets_vl.dataset as dataset_mod
    from datasets_vl import VLDataset

    decoded: list[object] = []
    real = dataset_mod.decode_image
    monkeypatch.setattr(dataset_mod, "decode_image", lambda ref: decoded.append(ref) or real(ref))
    images = [Image.new("RGB", (12, 12), (40 * i, 10, 200)) for i in range(3)]
    train_aug, eval_tf = build_transforms(8, train_augment=True)
    fixed = VLDataset("t", "classification", ["a", "b"], images, [0, 1, 0], transform=eval_tf)
    first = [fixed[i]["image"] for i in range(3)]
    again = [fixed[i]["image"] for i in range(3)]
    assert len(decoded) == 3 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert fixed.for_eval()._memo is fixed._memo  # the eval copy shares the images and the byte budget
    fresh = VLDataset("t", "classification", ["a", "b"], images, [0, 1, 0], transform=eval_tf)
    assert all(torch.equal(fresh[i]["image"], first[i]) for i in range(3))
    decoded.clear()
    augmented = fixed.with_transform(train_aug)
    for _ in range(2):
        [augmented[i] for i in range(3)]
    assert len(decoded) == 6
    decoded.clear()
    monkeypatch.setattr(dataset_mod, "MEMO_BYTES", 0)  # over the byte budget: nothing is kept
    capped = VLDataset("t", "classification", ["a", "b"], images, [0, 1, 0], transform=eval_tf)
    [capped[i] for i in range(3)] + [capped[i] for i in range(3)]
    assert len(decoded) == 6
