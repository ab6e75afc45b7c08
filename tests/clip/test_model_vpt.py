"""Visual prompts (shallow / deep VPT), gradient flow and unsupported image towers."""

from __future__ import annotations

import pytest
import torch

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, TaskInfo, create_backbone, tiny_clip_config
from mvlpt.clip.vision_tower import VisionTower
from mvlpt.core.errors import ConfigError, ShapeMismatchError
from mvlpt.core.stages import PromptConfig

TASKS = [TaskInfo("pets", "classification", ["cat", "dog", "hamster"]),
         TaskInfo("cars", "classification", ["sedan", "truck"], template="a photo of a {}, a type of car.")]


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def batch(n: int = 6) -> dict:
    return {"images": images(n), "labels": torch.tensor([0, 1, 0, 2, 1, 0][:n]),
            "task_ids": torch.tensor([0, 1, 1, 0, 1, 0][:n]), "indices": torch.arange(n), "questions": [None] * n}


def vpt(length: int = 3, deep: bool = True, method: str = "vpt") -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=2), visual=PromptConfig(length=length), vpt_deep=deep)


def reference_deep(model, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Deep VPT written directly on open_clip's modules: prompts (L, l, d) replace the prompt slots before every block."""
    v = model.visual
    h = v._embeds(x)
    l = prompts.shape[1]
    h = torch.cat([h[:, :1], prompts[0].expand(h.shape[0], -1, -1), h[:, 1:]], dim=1)
    for i, blk in enumerate(v.transformer.resblocks):
        if i > 0:
            h = torch.cat([h[:, :1], prompts[i].expand(h.shape[0], -1, -1), h[:, 1 + l:]], dim=1)
        h = blk(h)
    return v.ln_post(h[:, 0]) @ v.proj


def test_deep_zero_prompts_are_tokens_not_a_no_op(backbone):
    """Documented behaviour: zero prompts are ordinary (zero) tokens in every layer — the output equals
    the direct deep-VPT computation with zero prompts, and differs from the un-prompted encoder."""
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, vpt(3, deep=True), "single")
    p = m.prompt_set.visual_prompt
    assert p.shape == (2, 3, 64)  # (layers, l, d)
    with torch.no_grad():
        p.prompts.zero_()
    x = images()
    vis = m.prompt_set(torch.tensor([0])).visual.expand(4, -1, -1, -1)
    out = m.vision_tower.encode(x, vis)
    torch.testing.assert_close(out, reference_deep(model, x, torch.zeros(2, 3, 64)), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, model.encode_image(x), atol=1e-4)


def test_deep_prompts_replace_not_accumulate(backbone):
    model, tok, _ = backbone
    tower = VisionTower(model)
    x = images(2)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randn(2, 3, 64, generator=g)
    deep = tower.encode(x, prompts.unsqueeze(0).expand(2, -1, -1, -1))
    torch.testing.assert_close(deep, reference_deep(model, x, prompts), rtol=1e-5, atol=1e-5)
    # shallow = the first layer's prompt only, carried through; differs from deep replacement
    shallow = tower.encode(x, prompts[0].unsqueeze(0).expand(2, -1, -1))
    assert not torch.allclose(deep, shallow, atol=1e-4)
    # the last layer's prompt matters in deep mode
    changed = prompts.clone()
    changed[1] = torch.randn(3, 64, generator=g)  # (a constant shift would vanish in LayerNorm)
    assert not torch.allclose(deep, tower.encode(x, changed.unsqueeze(0).expand(2, -1, -1, -1)), atol=1e-4)
    with pytest.raises(ShapeMismatchError, match="expects"):
        tower.encode(x, torch.zeros(2, 5, 3, 64))  # 5 layers for a 2-layer tower


def test_per_sample_task_prompts_are_batch_independent(backbone):
    """Each image sees its own task's prompt: features in a mixed-task batch equal those in a single-task batch."""
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, vpt(3, deep=False), "source").eval()
    b = batch()
    mixed = m._forward(b)[1]
    for k in (0, 1):
        rows = (b["task_ids"] == k).nonzero(as_tuple=True)[0]
        sub = {**b, "images": b["images"][rows], "labels": b["labels"][rows], "task_ids": b["task_ids"][rows],
               "indices": b["indices"][rows], "questions": [None] * len(rows)}
        torch.testing.assert_close(m._forward(sub)[1], mixed[rows], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,stage", [("coop", "source"), ("vpt", "teachers"), ("upt", "source"), ("upt", "target")])
def test_gradients_only_on_prompt_parameters(backbone, method, stage, tmp_path):
    model, tok, _ = backbone
    pc = vpt(2, deep=True, method=method)
    if stage == "target":  # a source run to initialise from
        src = CLIPTaskModel(model, tok, TASKS, vpt(2, deep=True, method=method), "source")
        from mvlpt.core.checkpoint import save_tensors

        save_tensors(tmp_path / "prompts.safetensors", src.trainable_state_dict())
        pc.text.source_path = pc.visual.source_path = str(tmp_path)
        pc.text.train = pc.visual.train = ["task_factors"]  # MPT's factors-only variant
    m = CLIPTaskModel(model, tok, TASKS, pc, stage)
    m.train()
    m.step(batch()).loss.backward()
    prompt_params = {id(p) for mod in m.prompt_modules().values() for p in mod.parameters()}
    for name, p in m.named_parameters():
        if id(p) not in prompt_params:
            assert not p.requires_grad and p.grad is None, name
        elif p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad is None for p in model.parameters())
    assert not model.training  # the frozen backbone stays in eval mode during training
    trainable = {n.split(".", 1)[1] for n, p in m.named_parameters() if p.requires_grad}
    if stage == "target":  # factors-only target: only the task factors train
        assert trainable and all(n.endswith(("task_u", "task_v")) for n in trainable)


def test_non_vit_image_tower_refuses_visual_prompts():
    cfg = tiny_clip_config()
    cfg["vision_cfg"] = {"layers": [1, 1, 1, 1], "width": 8, "image_size": 32}
    model, tok, _, _ = create_backbone(cfg, seed=0)
    with pytest.raises(ConfigError, match="ViT image tower.*ModifiedResNet"):
        CLIPTaskModel(model, tok, TASKS, vpt(2), "single")
    with pytest.raises(ConfigError, match="ViT"):
        CLIPTaskModel(model, tok, TASKS, vpt(2, method="upt"), "single")
    m = CLIPTaskModel(model, tok, TASKS, vpt(2, method="coop"), "single")  # text prompts still work
    out = m.step(batch())
    out.loss.backward()
    assert m.prompt_set.text_prompt.prompts.grad is not None
