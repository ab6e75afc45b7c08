"""PromptedT5: the prompt reaches the encoder, only prompts train, mixed batches, generation = scoring."""

import pytest
import torch

from tmpt_helpers import batch_for, make_model, specs, tiny_backbone

from mvlpt.core.errors import ShapeMismatchError
from mvlpt.core.prompts import VanillaPrompt
from text_mpt.model import PromptedT5, normalize_answer

ROWS = [(0, "the movie was good", 1), (1, "a goal in the ball game", 0), (0, "awful plot", 0),
        (1, "we ate soup and bread", 1), (0, "great actor really", 1), (1, "code on a chip", 2)]


def test_prompt_reaches_encoder_and_only_prompt_gets_gradients():
    model = make_model()
    model.train()
    batch = batch_for(ROWS)
    out = model.step(batch)
    b, n = batch["input_ids"].shape
    assert out.hidden.shape == (b, 4 + n, 32) and out.hidden_mask.shape == (b, 4 + n)
    assert bool(out.hidden_mask[:, :4].all())
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["prompt.prompts"] is not None and float(grads["prompt.prompts"].abs().sum()) > 0
    assert all(g is None for name, g in grads.items() if not name.startswith("prompt."))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training  # frozen backbone stays in eval mode (no dropout)
    # changing the prompt changes the encoder output at the input positions and the loss
    with torch.no_grad():
        h0, _ = model.encode(batch)
        model.prompt.prompts.add_(1.0)
        h1, _ = model.encode(batch)
    assert not torch.allclose(h0[:, 4:], h1[:, 4:])


def test_dropout_option_keeps_backbone_training():
    model = make_model(backbone_dropout=True)
    model.train()
    assert model.backbone.training
    model.eval()
    assert not model.backbone.training


def test_mixed_task_batch_equals_separate_batches():
    model = make_model().eval()
    mixed = batch_for(ROWS)
    with torch.no_grad():
        per_mixed = model.per_sample_loss(mixed)
        out = model.step(mixed)
        for tid in (0, 1):
            rows = [r for r in ROWS if r[0] == tid]
            sep = batch_for(rows)
            per_sep = model.per_sample_loss(sep)
            idx = [i for i, r in enumerate(ROWS) if r[0] == tid]
            torch.testing.assert_close(per_mixed[idx], per_sep, atol=1e-5, rtol=1e-5)
            sep_out = model.step(sep)
            torch.testing.assert_close(sep_out.loss, per_sep.mean(), atol=1e-5, rtol=1e-5)
            c = sep_out.logits.shape[1]
            torch.testing.assert_close(out.logits[idx][:, :c], sep_out.logits, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.loss, per_mixed.mean())
    # the polarity task has 2 candidates: its third class is masked out for distillation
    assert out.logit_mask.tolist()[0] == [True, True, False] and out.logit_mask.tolist()[1] == [True, True, True]


def test_score_all_false_gives_the_same_loss():
    batch = batch_for(ROWS)
    a, b = make_model(score_all=True).eval(), make_model(score_all=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(a.step(batch).loss, b.step(batch).loss)
        assert b.step(batch).logits is None


def test_generation_matches_teacher_forced_first_step():
    model = make_model(length=6).eval()
    batch = batch_for(ROWS)
    with torch.no_grad():
        gen = model.generate(batch, max_new_tokens=3)
        hidden, mask = model.encode(batch)
        start = torch.full((len(ROWS), 1), model.backbone.config.decoder_start_token_id)
        first = model.decoder_logits(hidden, mask, start)[:, 0].argmax(-1)
        assert gen[:, 0].tolist() == start[:, 0].tolist()
        assert gen[:, 1].tolist() == first.tolist()
        # and the second step under teacher forcing of the generated first token
        second = model.decoder_logits(hidden, mask, gen[:, :2])[:, 1].argmax(-1)
        live = gen[:, 1] != model.backbone.config.eos_token_id
        assert gen[live, 2].tolist() == second[live].tolist()
    # prompts differ per task: the same text under two tasks is encoded differently
    b2 = batch_for([(0, "same text", 0), (1, "same text", 0)])
    h, _ = model.encode(b2)
    assert not torch.allclose(h[0], h[1])


def test_predict_records_and_generation_parsing():
    model = make_model(eval_mode="both", max_new_tokens=4).eval()
    batch = batch_for(ROWS)
    records = model.predict(batch)
    assert len(records) == len(ROWS)
    for r, (tid, _, label) in zip(records, ROWS):
        assert r["task_id"] == tid and r["label"] == label and 0 <= r["pred"] < (2 if tid == 0 else 3)
        assert r["answer"] == specs()[tid].verbalizers[r["pred"]]
        assert isinstance(r["gen_text"], str) and r["gen_pred"] in range(-1, 3)
    metrics = model.compute_metrics(records)
    assert {"polarity/accuracy", "topic/accuracy", "polarity/gen_accuracy", "score"} <= set(metrics)
    assert model._parse(" Positive. ", ["negative", "positive"], specs()[0]) == (1, None)
    assert model._parse("neutral", ["negative", "positive"], specs()[0]) == (-1, None)
    assert normalize_answer("  Not   Sure! ") == "not sure"


def test_prompt_of_another_width_is_refused():
    with pytest.raises(ShapeMismatchError, match="d_model=32"):
        PromptedT5(tiny_backbone(), VanillaPrompt(2, (4, 64)), specs())
    with pytest.raises(ShapeMismatchError, match="2 task"):
        PromptedT5(tiny_backbone(), VanillaPrompt(3, (4, 32)), specs())


def test_regression_and_per_example_candidates_in_one_batch():
    from tmpt_helpers import tokenizer

    from text_mpt.data import TextCollator, TextTaskDataset
    from text_mpt.tasks import get_task

    sp = [get_task("stsb"), get_task("copa")]
    model = PromptedT5(tiny_backbone(), VanillaPrompt(2, (4, 32)), sp, tokenizer(), eval_mode="both", max_new_tokens=3).eval()
    rows = [(0, {"sentence1": "A dog runs.", "sentence2": "A dog is running.", "label": 4.2}),
            (1, {"premise": "It rained.", "choice1": "The street got wet.", "choice2": "Dry.", "question": "effect", "label": 0})]
    items = []
    for i, (tid, row) in enumerate(rows):
        it = TextTaskDataset(sp[tid].name, [sp[tid].example(row)], tokenizer(), 64, 32)[0]
        items.append({**it, "task_id": tid, "index": i, "example_id": i})
    batch = TextCollator(0)(items)
    assert batch["cand_ids"].shape[1] == 26 and batch["class_mask"].sum(-1).tolist() == [26, 2]
    recs = model.predict(batch)
    assert 0.0 <= recs[0]["pred_value"] <= 5.0 and recs[0]["value"] == pytest.approx(4.2) and len(recs[0]["scores"]) == 26
    assert recs[1]["answer"] in ("The street got wet.", "Dry.") and len(recs[1]["scores"]) == 2
    metrics = model.compute_metrics(recs + [{**recs[0], "index": 5, "value": 1.0}])
    assert {"stsb/pearson", "stsb/spearman", "copa/accuracy", "stsb/gen_pearson"} <= set(metrics)
    with torch.no_grad():
        out = model.step(batch)
    assert out.logits.shape == (2, 26) and out.logit_mask[1].sum() == 2
