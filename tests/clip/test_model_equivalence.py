"""The prompted CLIP reproduces open_clip where it should (tiny random CLIP, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, CLIPZeroShot, TaskInfo
from mvlpt.clip.vision_tower import VisionTower
from mvlpt.core.stages import PromptConfig

CLASSES = ["cat", "dog", "golden retriever", "tabby cat with stripes"]


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def cfg(method: str, text: int = 0, visual: int = 0, **kw) -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=text), visual=PromptConfig(length=visual), **kw)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_zero_length_visual_prompt_reproduces_encode_image(backbone):
    model, tok, _ = backbone
    x = images()
    close(VisionTower(model).encode(x), model.encode_image(x))
    m = CLIPTaskModel(model, tok, [TaskInfo("t", "classification", CLASSES)], cfg("vpt", visual=0), "single")
    assert m.prompt_modules() == {}
    close(m.vision_tower.encode(x, None), model.encode_image(x))


def test_zero_length_text_prompt_reproduces_encode_text(backbone):
    model, tok, _ = backbone
    task = TaskInfo("t", "classification", CLASSES, template="a blurry photo of a {}.")
    m = CLIPTaskModel(model, tok, [task], cfg("coop", text=0), "single")
    ref = model.encode_text(tok([task.template.format(c) for c in CLASSES]))
    close(m.class_texts.features(0, None), ref)


def test_zero_length_prompts_give_zero_shot_logits(backbone):
    model, tok, _ = backbone
    task = TaskInfo("t", "classification", CLASSES)
    batch = {"images": images(), "labels": torch.tensor([0, 1, 2, 3]), "task_ids": torch.zeros(4, dtype=torch.long),
             "indices": torch.arange(4), "questions": [None] * 4}
    m = CLIPTaskModel(model, tok, [task], cfg("coop", text=0), "single").eval()
    logits = m.step(batch).logits
    img = F.normalize(model.encode_image(batch["images"]), dim=-1)
    txt = F.normalize(model.encode_text(tok([f"a photo of a {c}." for c in CLASSES])), dim=-1)
    close(logits, model.logit_scale.exp() * img @ txt.T)
    zs = CLIPZeroShot(model, tok, [task])
    close(zs.step(batch).logits, logits)


@pytest.mark.parametrize("position,text", [
    ("end", "a photo of a {}."),
    ("middle", "a photo {} of a."),
    ("front", "{} a photo of a."),
])
def test_coop_context_from_words_matches_hand_written_prompt(backbone, position, text):
    """A context initialised from "a photo of a" encodes exactly like the written-out prompt."""
    model, tok, _ = backbone
    pc = cfg("coop", class_token_position=position)
    pc.text = PromptConfig(length=4, init="text", init_text="a photo of a")
    m = CLIPTaskModel(model, tok, [TaskInfo("t", "classification", CLASSES)], pc, "single")
    ctx = m.prompt_set(torch.tensor([0])).text[0]
    feats = m.class_texts.features(0, ctx)
    close(feats, model.encode_text(tok([text.format(c) for c in CLASSES])))
    # the fixed parts are trimmed to the longest prompt of the task, not padded to the context length
    assert m.class_texts.parts(0)["index"].shape[1] < tok.context_length


def test_class_specific_context_from_words(backbone):
    model, tok, _ = backbone
    pc = cfg("coop", class_specific_context=True)
    pc.text = PromptConfig(length=4, init="text", init_text="a photo of a")
    tasks = [TaskInfo("t", "classification", CLASSES), TaskInfo("u", "classification", ["red", "blue"])]
    m = CLIPTaskModel(model, tok, tasks, pc, "teachers")
    assert m.prompt_modules()["text_prompt"].shape == (4, 4, 64)  # (C_max, l, d)
    ctx = m.prompt_set(torch.tensor([1])).text[0]
    close(m.class_texts.features(1, ctx), model.encode_text(tok(["a photo of a red.", "a photo of a blue."])))


def test_bf16_autocast_step(backbone):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, [TaskInfo("t", "classification", CLASSES)], cfg("upt", text=2, visual=2), "single")
    batch = {"images": images(2), "labels": torch.tensor([0, 3]), "task_ids": torch.zeros(2, dtype=torch.long),
             "indices": torch.arange(2), "questions": [None, None]}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.step(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert m.prompt_set.text_prompt.prompts.grad is not None


def test_activation_checkpointing_gives_the_same_loss_and_gradients(backbone):
    model, tok, _ = backbone
    batch = {"images": images(3), "labels": torch.tensor([0, 3, 1]), "task_ids": torch.zeros(3, dtype=torch.long),
             "indices": torch.arange(3), "questions": [None] * 3}
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = CLIPTaskModel(model, tok, [TaskInfo("t", "classification", CLASSES)], cfg("upt", 2, 2, checkpointing=ckpt), "single")
        loss = m.step(batch).loss
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in m.parameters() if p.requires_grad]))
    close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        close(a, b)
