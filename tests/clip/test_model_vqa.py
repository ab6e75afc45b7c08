"""VQA as a task of the prompted CLIP, end to end (tiny random CLIP, CPU), and zero-shot ensembles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datasets_vl.collate import collate_vl
from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, CLIPZeroShot, TaskInfo
from mvlpt.core.errors import DataError
from mvlpt.core.stages import PromptConfig

ANSWERS = ["yes", "no", "red", "blue", "green"]
TASKS = [TaskInfo("shapes", "classification", ["circle", "square"]),
         TaskInfo("vqa", "vqa", ANSWERS, template="question: {question} answer: {}.")]


def samples() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.randn(3, 32, 32, generator=g)  # noqa: E731
    vqa = lambda q, sc, i: {"image": img(), "label": max(sc, key=sc.get) if sc else -1, "question": q,  # noqa: E731
                            "answer_scores": sc, "num_answers": len(ANSWERS), "task_id": 1, "index": i}
    return [
        {"image": img(), "label": 1, "question": None, "answer_scores": None, "task_id": 0, "index": 0},
        vqa("what color is the shape?", {2: 1.0, 3: 1 / 3}, 0),
        vqa("is it round?", {0: 1.0}, 1),
        vqa("what color is it?", {4: 1.0}, 2),  # only answer outside the first 3 candidates: not counted
    ]


def pc(method: str, text: int = 2, visual: int = 2, max_answers: int = 3) -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=text), visual=PromptConfig(length=visual),
                            vqa_max_answers=max_answers)


def test_vqa_scores_question_answer_texts_against_the_image(backbone):
    model, tok, _ = backbone
    batch = collate_vl(samples())
    assert batch["answer_scores"].shape == (4, 5)
    m = CLIPTaskModel(model, tok, TASKS, pc("vpt", visual=0), "single").eval()  # nothing learned: plain CLIP
    out = m.step(batch)
    assert out.logits.shape == (4, 2 + 3)  # 2 classes + 3 candidate answers
    img = F.normalize(model.encode_image(batch["images"]), dim=-1)
    scale = model.logit_scale.exp()
    for i in (1, 2, 3):
        q = batch["questions"][i]
        txt = F.normalize(model.encode_text(tok([f"question: {q} answer: {a}." for a in ANSWERS[:3]])), dim=-1)
        torch.testing.assert_close(out.logits[i, 2:], scale * img[i] @ txt.T, rtol=1e-5, atol=1e-5)
        assert torch.isneginf(out.logits[i, :2]).all()
    # loss: mean over counted rows of CE (classification) and soft CE against normalised VQA scores
    ce = F.cross_entropy(out.logits[0, :2][None], torch.tensor([1]))
    t1 = torch.tensor([0.0, 0.0, 1.0])  # {red: 1, blue: 1/3} capped to the first 3 answers -> red only
    soft1 = -(t1 * F.log_softmax(out.logits[1, 2:], -1)).sum()
    soft2 = -F.log_softmax(out.logits[2, 2:], -1)[0]
    torch.testing.assert_close(out.loss, (ce + soft1 + soft2) / 3)
    recs = m.predict(batch)
    for r, row in zip(recs[1:], range(1, 4)):
        assert r["correct"] == pytest.approx(float(batch["answer_scores"][row, r["pred"]]))
    metrics = m.compute_metrics(recs)
    assert metrics["vqa/n"] == 3.0 and 0.0 <= metrics["vqa/accuracy"] <= 100.0


@pytest.mark.parametrize("method", ["coop", "upt"])
def test_vqa_loss_trains_the_text_context(backbone, method):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, pc(method), "source")
    batch = collate_vl(samples()[1:3])
    out = m.step(batch)
    out.loss.backward()
    g = m.prompt_set.text_prompt.shared.grad
    assert g is not None and g.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_vqa_class_specific_context_and_whole_vocabulary(backbone):
    model, tok, _ = backbone
    cfg = pc("coop", max_answers=0)
    cfg.class_specific_context = True
    m = CLIPTaskModel(model, tok, TASKS, cfg, "teachers")
    out = m.step(collate_vl(samples()))
    assert out.logits.shape == (4, 2 + 5)
    out.loss.backward()
    assert m.prompt_set.text_prompt.prompts.grad[1].abs().sum() > 0


def test_vqa_bad_input(backbone):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, pc("coop"), "single")
    rows = samples()
    rows[2]["question"] = None
    with pytest.raises(DataError, match=r"'vqa' is a VQA task but sample\(s\) \[1\] have no question"):
        m.step(collate_vl(rows))
    batch = collate_vl(samples()[1:2])
    del batch["answer_scores"]
    with pytest.raises(DataError, match="no 'answer_scores'"):
        m.step(batch)


def test_zero_shot_template_ensemble(backbone):
    model, tok, _ = backbone
    temps = ["a photo of a {}.", "a drawing of a {}."]
    vqa_temps = ["question: {question} answer: {}.", "Q: {question} A: {answer}"]
    zs = CLIPZeroShot(model, tok, TASKS, [temps, vqa_temps], vqa_max_answers=3)
    feats = [F.normalize(model.encode_text(tok([t.format(c) for c in ["circle", "square"]])), dim=-1) for t in temps]
    torch.testing.assert_close(zs.class_features(0), F.normalize(feats[0] + feats[1], dim=-1), rtol=1e-5, atol=1e-5)
    pf = zs.pair_features(1, ["is it red?"])
    ref = [F.normalize(model.encode_text(tok([t.format(a, answer=a, question="is it red?") for a in ANSWERS[:3]])), dim=-1)
           for t in vqa_temps]
    torch.testing.assert_close(pf[0], F.normalize(ref[0] + ref[1], dim=-1), rtol=1e-5, atol=1e-5)
    zs.eval()
    recs = zs.predict(collate_vl(samples()))
    assert len(recs) == 4 and set(zs.compute_metrics(recs)) >= {"shapes/accuracy", "vqa/accuracy", "score"}
    assert zs.prompt_modules() == {} and zs.trainable_parameters_per_task()["total"] == 0


@pytest.mark.parametrize("class_specific", [False, True])
def test_a_repeated_question_is_encoded_once_with_the_same_loss_and_gradients(backbone, class_specific):
    """Questions asked several times in a batch are encoded once; loss and context gradients equal those of
    encoding every row separately (the straightforward path, one question per call)."""
    model, tok, _ = backbone
    cfg = CLIPPromptConfig(method="coop", text=PromptConfig(length=2, init_std=0.1), vqa_max_answers=3,
                           class_specific_context=class_specific)
    torch.manual_seed(0)
    m = CLIPTaskModel(model, tok, TASKS, cfg, "single")
    rows = samples()
    rows += [dict(rows[1], index=3), dict(rows[2], index=4), dict(rows[1], index=5)]  # repeats
    batch = collate_vl(rows)
    calls: list[int] = []
    encode = m.pair_texts.encode
    m.pair_texts.encode = lambda part, *a, **k: (calls.append(len(part["ids"])), encode(part, *a, **k))[1]
    out = m.step(batch)
    out.loss.backward()
    fast_loss, fast_grads = out.loss.detach(), [p.grad.clone() for p in m.parameters() if p.requires_grad]
    m.pair_texts.encode = encode
    m.zero_grad()
    per_row = m._pair_features
    m._pair_features = lambda k, qs, ctx: torch.cat([per_row(k, [q], ctx) for q in qs])
    out = m.step(batch)
    out.loss.backward()
    torch.testing.assert_close(out.loss.detach(), fast_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_grads, [p.grad for p in m.parameters() if p.requires_grad]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert calls == [3 * 3]  # one text-tower call over the 3 distinct questions x 3 candidate answers (not 6 x 3)
