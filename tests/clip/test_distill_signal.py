"""CLIP distillation carries signal: raw (pre-normalisation) features, masked where the prompt cannot act;
and the health figures of the prompted CLIP (reference norms, chance, class-text collapse)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, TaskInfo
from mvlpt.core.distill import mse_distillation
from mvlpt.core.stages import PromptConfig

TASKS = [TaskInfo("pets", "classification", ["cat", "dog", "hamster"]),
         TaskInfo("cars", "classification", ["sedan", "truck"])]


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(n, 3, 32, 32, generator=g), "labels": torch.tensor([0, 1, 2, 0, 1, 0])[:n],
            "task_ids": torch.tensor([0, 0, 0, 1, 1, 1])[:n], "indices": torch.arange(n), "questions": [None] * n}


def _pair(backbone, method):
    model, tok, _ = backbone
    cfg = CLIPPromptConfig(method=method, text=PromptConfig(length=2, init_std=0.05), visual=PromptConfig(length=2, init_std=0.05))
    torch.manual_seed(1)
    teacher = CLIPTaskModel(model, tok, TASKS, cfg, "teachers")
    torch.manual_seed(2)
    student = CLIPTaskModel(model, tok, TASKS, cfg, "source")
    return teacher.eval(), student.eval()


@pytest.mark.parametrize("method", ["coop", "vpt", "upt"])
def test_hidden_mse_is_nonzero_where_prompts_act_and_zero_where_they_cannot(backbone, method):
    teacher, student = _pair(backbone, method)
    b = _batch()
    with torch.no_grad():
        s, t = student.step(b), teacher.step(b)
    img_ok, txt_ok = s.hidden_mask[:, 0], s.hidden_mask[:, 1]
    assert bool(img_ok.all()) == (method in ("vpt", "upt")) and bool(txt_ok.all()) == (method in ("coop", "upt"))
    diff = (s.hidden - t.hidden).pow(2).sum(-1)  # (B, 2)
    if method == "coop":  # same frozen image features in teacher and student
        assert float(diff[:, 0].max()) == 0.0
    if method == "vpt":  # same hand-template class texts
        assert float(diff[:, 1].max()) == 0.0
    mse = mse_distillation(s.hidden, t.hidden, s.hidden_mask)
    assert float(mse) > 1e-4
    # the features are raw (before normalisation): their norms are not 1 and the normalised MSE is far smaller
    norms = s.hidden.norm(dim=-1)[s.hidden_mask]
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-2)
    unit = mse_distillation(F.normalize(s.hidden, dim=-1), F.normalize(t.hidden, dim=-1), s.hidden_mask)
    assert float(mse) > float(unit)


def test_hidden_target_is_the_raw_class_text_feature(backbone):
    teacher, student = _pair(backbone, "coop")
    b = _batch()
    with torch.no_grad():
        out = student.step(b)
        ctx = student.prompt_set(torch.arange(2)).text
        for i, (k, y) in enumerate(zip(b["task_ids"].tolist(), b["labels"].tolist())):
            feats = student.class_texts.features(k, ctx[k])
            torch.testing.assert_close(out.hidden[i, 1], feats[y].float(), rtol=1e-5, atol=1e-6)


def test_health_figures_of_the_prompted_clip(backbone):
    teacher, _ = _pair(backbone, "upt")
    refs = teacher.reference_norms()
    assert set(refs) <= {"text_prompt", "visual_prompt"} and all(v > 0 for v in refs.values())
    assert teacher.chance_levels() == {"pets/accuracy": pytest.approx(100 / 3), "cars/accuracy": pytest.approx(50.0)}
    diag = teacher.diagnostics()
    assert set(diag) == {"pets/class_text_cos", "cars/class_text_cos"} and all(-1 <= v <= 1 for v in diag.values())
    # a huge context swamps the class names: the class-text features collapse
    with torch.no_grad():
        teacher.prompt_modules()["text_prompt"].prompts.mul_(0).add_(5.0)
    collapsed = teacher.diagnostics()
    assert collapsed["pets/class_text_cos"] > diag["pets/class_text_cos"]
