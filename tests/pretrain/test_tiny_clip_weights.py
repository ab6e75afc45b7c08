"""The shipped tiny-clip: loads offline, is fp16 and small, and reproduces its recorded zero-shot accuracy."""

from __future__ import annotations

import pytest
import torch

from mvlpt.clip.backbone import METADATA_FILE, TINY_CLIP, WEIGHTS_FILE, create_backbone, weights_dir
from mvlpt.clip.pretrain import data as pd
from mvlpt.clip.pretrain import read_metadata
from mvlpt.clip.zeroshot import zero_shot_accuracy
from mvlpt.core.checkpoint import load_tensors

TEMPLATE = "a photo of a {}."


@pytest.fixture(scope="module")
def shipped():
    model, tokenizer, preprocess, _ = create_backbone(TINY_CLIP)
    return model, tokenizer, preprocess.eval_transform()


def test_shipped_files_are_fp16_and_small():
    d = weights_dir(TINY_CLIP)
    for name in (f"{TINY_CLIP}.json", WEIGHTS_FILE, METADATA_FILE, "README.md"):
        assert (d / name).is_file(), name
    assert (d / WEIGHTS_FILE).stat().st_size < 40e6  # issue 12: up to ~40 MB in the package (fp16)
    assert {t.dtype for t in load_tensors(d / WEIGHTS_FILE).values()} == {torch.float16}
    meta = read_metadata()
    assert meta["commit"] and meta["steps"] > 0
    assert not set(meta["targets_unseen"]) & set(meta["pretraining_data"])


def test_loads_in_fp32_eval_mode_with_matching_preprocess(shipped):
    model, tokenizer, preprocess = shipped
    assert not model.training and {p.dtype for p in model.parameters()} == {torch.float32}
    size = model.visual.image_size[0]
    imgs, _, _ = pd.sklearn_digits_sample(3, size)
    from PIL import Image
    from sklearn.datasets import load_digits

    pil = Image.fromarray((load_digits().images[0] * (255.0 / 16.0)).round().astype("uint8"), mode="L")
    torch.testing.assert_close(preprocess(pil), pd.normalize(imgs[:1])[0], atol=1e-6, rtol=0)
    assert tokenizer(["a photo of a cat."]).shape == (1, model.context_length)


@pytest.mark.parametrize("key, sample", [("sklearn_digits_300", pd.sklearn_digits_sample),
                                         ("easy_vqa_shapes_300", pd.easy_vqa_shape_sample)])
def test_reproduces_recorded_zero_shot_accuracy(shipped, key, sample):
    model, tokenizer, _ = shipped
    imgs, labels, names = sample(300, model.visual.image_size[0])
    acc = zero_shot_accuracy(model, tokenizer, pd.normalize(imgs), labels, names, [TEMPLATE])
    assert acc == pytest.approx(read_metadata()["zero_shot"]["fixed_samples"][key], abs=1e-6)


def test_open_clip_loads_the_shipped_files():
    import open_clip

    open_clip.add_model_config(weights_dir(TINY_CLIP))
    model = open_clip.create_model(TINY_CLIP, pretrained=str(weights_dir(TINY_CLIP) / WEIGHTS_FILE))
    ref = load_tensors(weights_dir(TINY_CLIP) / WEIGHTS_FILE)
    torch.testing.assert_close(model.state_dict()["visual.conv1.weight"], ref["visual.conv1.weight"].float())


def test_reproduces_target_zero_shot_on_shared_data(shipped, shared_data):
    model, tokenizer, _ = shipped
    imgs, labels, names = pd.load_image_split(shared_data, "sign_digits", "test", model.visual.image_size[0])
    acc = zero_shot_accuracy(model, tokenizer, pd.normalize(imgs), labels, names, [TEMPLATE])
    assert acc == pytest.approx(read_metadata()["zero_shot"]["test_split"]["sign_digits"]["generic"], abs=1e-4)
