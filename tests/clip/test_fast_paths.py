"""The CLIP step does no repeated frozen work and equals the straightforward computation:

* one padded text-tower call for all present tasks' class prompts = one call per task (loss, gradients);
* the CoOp teacher of a source stage reuses the student's prompt-free image features for the same batch
  tensor on any device (here with the CPU pixel cache off, as on a GPU), and nothing stale is reused;
* frozen class-text features (VPT) follow weight changes;
* a step reads to the host once (the batch's task ids) and a teacher on the same batch not at all.
"""

from __future__ import annotations

import pytest
import torch

from clip_helpers import make_batch
from sync_counter import SyncCounter

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, TaskInfo, create_backbone, tiny_clip_config
from mvlpt.clip import feature_cache, scoring
from mvlpt.core import prompts as core_prompts
from mvlpt.core.stages import PromptConfig

# class names of different token lengths, so the one text-tower call pads
TASKS = [TaskInfo("pets", "classification", ["cat", "golden retriever puppy", "hamster"]),
         TaskInfo("cars", "classification", ["sedan", "truck"]),
         TaskInfo("birds", "classification", ["owl", "crow", "red tailed hawk of the north", "eagle"])]
BATCH = ([0, 2, 1, 2, 0, 2], [1, 2, 0, 3, 0, 1])


def pc(method: str, text: int = 3, visual: int = 2, **kw) -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=text, init_std=0.1),
                            visual=PromptConfig(length=visual, init_std=0.1), **kw)


def _loss_and_grads(m: CLIPTaskModel, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    m.zero_grad()
    out = m.step(batch)
    (out.loss + 0.1 * out.hidden[:, 1].pow(2).mean()).backward()  # the target text features carry gradient too
    return out.loss.detach(), [p.grad.clone() for p in m.parameters() if p.requires_grad]


@pytest.mark.parametrize("method,kw", [("coop", {}), ("coop", {"class_token_position": "middle"}),
                                       ("upt", {}), ("coop", {"shared_prompt": True})])
def test_one_text_tower_call_equals_one_call_per_task(backbone, method, kw):
    model, tok, _ = backbone
    torch.manual_seed(0)
    m = CLIPTaskModel(model, tok, TASKS, pc(method, **kw), "source").train()
    batch = make_batch(*BATCH, seed=4)
    calls: list[int] = []
    encode = m.text_tower.encode
    m.text_tower.encode = lambda x, pool, ckpt=False: (calls.append(x.shape[0]), encode(x, pool, ckpt))[1]
    fast = _loss_and_grads(m, batch)
    assert calls == [3 + 2 + 4]  # every present task's class prompts in one call
    bank = m.class_texts
    bank.features_many = lambda ctxs, ckpt=False: {k: bank.features(k, c, ckpt) for k, c in ctxs.items()}
    calls.clear()
    ref = _loss_and_grads(m, batch)
    assert sorted(calls) == [2, 3, 4]  # the straightforward way: one call per task
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-6)
    assert fast[1] and any(float(g.abs().sum()) > 0 for g in fast[1])
    for a, b in zip(fast[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _conv_calls(model) -> list[int]:
    calls: list[int] = []
    model.visual.conv1.register_forward_hook(lambda mod, a, o: calls.append(a[0].shape[0]))
    return calls


def test_teacher_reuses_the_students_image_features_without_the_pixel_cache(monkeypatch):
    monkeypatch.setattr(feature_cache.FeatureCache, "usable", staticmethod(lambda visual, images: False))  # as on a GPU
    model, tok, _, _ = create_backbone(tiny_clip_config(), seed=0)
    torch.manual_seed(1)
    teacher = CLIPTaskModel(model, tok, TASKS, pc("coop"), "teachers").eval()
    student = CLIPTaskModel(model, tok, TASKS, pc("coop"), "source").train()
    calls = _conv_calls(model)
    batch = make_batch(*BATCH, seed=5)
    out = student.step(batch)  # what the Trainer does: the student, then the teacher on the same batch
    with torch.no_grad():
        t_out = teacher.step(batch)
    out.loss.backward()
    assert calls == [6]  # the image tower ran once for both
    # equal to the teacher encoding the images itself
    fresh = dict(batch, images=batch["images"].clone())
    with torch.no_grad():
        t_ref = teacher.step(fresh)
    assert calls == [6, 6]
    torch.testing.assert_close(t_out.logits, t_ref.logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t_out.hidden, t_ref.hidden, rtol=1e-6, atol=1e-6)
    # nothing stale: pixels changed in place, weights changed, or a tower in training mode recompute
    with torch.no_grad():
        fresh["images"].mul_(0.5)
        a = teacher.step(fresh)
        assert calls == [6, 6, 6] and not torch.allclose(a.hidden[:, 0], t_ref.hidden[:, 0])
        model.visual.proj.mul_(2.0)
        b = teacher.step(fresh)
        assert len(calls) == 4
        torch.testing.assert_close(b.hidden[:, 0], 2.0 * a.hidden[:, 0], rtol=1e-5, atol=1e-5)
        model.visual.train()
        teacher.step(fresh), teacher.step(fresh)
        assert len(calls) == 6
        model.visual.eval()


def test_frozen_class_text_features_follow_weight_changes():
    model, tok, _, _ = create_backbone(tiny_clip_config(), seed=0)
    m = CLIPTaskModel(model, tok, TASKS, pc("vpt"), "source").train()
    batch = make_batch(*BATCH, seed=6)
    calls: list[int] = []
    encode = m.text_tower.encode
    m.text_tower.encode = lambda x, pool, ckpt=False: (calls.append(x.shape[0]), encode(x, pool, ckpt))[1]
    first = m.step(batch).hidden[:, 1].detach()
    m.step(batch)
    assert sorted(calls) == [2, 3, 4]  # hand templates: encoded once, then reused across steps
    with torch.no_grad():
        model.text_projection.mul_(2.0)
    again = m.step(batch).hidden[:, 1].detach()
    assert len(calls) == 6  # re-encoded after the change, not served from before it
    torch.testing.assert_close(again, 2.0 * first, rtol=1e-5, atol=1e-5)


def test_a_step_reads_the_host_once_and_the_teacher_never(backbone, monkeypatch):
    monkeypatch.setattr(scoring, "check_every_batch", lambda device: False)  # the accelerator policy
    # the core prompt modules' own task-id range check is the core's (2 reads per prompt forward): left out here
    check = core_prompts._as_task_ids
    monkeypatch.setattr(core_prompts, "_as_task_ids", lambda ids, n, device: ids.to(device=device, dtype=torch.long)
                        if isinstance(ids, torch.Tensor) else check(ids, n, device))
    model, tok, _ = backbone
    teacher = CLIPTaskModel(model, tok, TASKS, pc("coop"), "teachers").eval()
    student = CLIPTaskModel(model, tok, TASKS, pc("upt"), "source").train()
    warm = make_batch(*BATCH, seed=7)
    student.step(warm)  # first appearance of each task: its labels are checked (once per model)
    with torch.no_grad():
        teacher.step(warm)
    batch = make_batch(*BATCH, seed=8)
    with SyncCounter() as s_count:
        out = student.step(batch)
    with torch.no_grad(), SyncCounter() as t_count:
        teacher.step(batch)
    assert s_count.calls == ["tolist"]  # the batch's task ids, once
    assert t_count.calls == []  # the same batch tensor: read already
    assert torch.isfinite(out.loss)


def test_tokenize_caches_each_text_once_and_returns_the_tokenizers_ids(backbone):
    """The token-id cache is exact (same ids as the tokenizer, any order, truncation included) and calls the
    tokenizer only for texts it has not seen at that context length."""
    from mvlpt.clip import class_texts

    tok = backbone[1]
    calls: list[list[str]] = []

    def counting(texts, context_length=77):
        calls.append(list(texts))
        return tok(texts, context_length=context_length)

    texts = ["a photo of a cat.", "question: what color is it? answer: red.", "word " * 60, "a photo of a cat."]
    first = class_texts.tokenize(counting, texts, 16)
    assert torch.equal(first, tok(texts, context_length=16))
    again = class_texts.tokenize(counting, texts[::-1] + ["new text"], 16)
    assert torch.equal(again, tok(texts[::-1] + ["new text"], context_length=16))
    assert torch.equal(class_texts.tokenize(counting, texts[:1], 24), tok(texts[:1], context_length=24))
    assert calls == [texts[:3], ["new text"], texts[:1]]
