"""Candidate scoring without duplicated encoder states: the encoder runs once per input, the decoder's
cross-attention keys / values are projected once per input (not once per candidate), and the loss,
candidate scores and prompt gradients equal decoding the encoder states repeated per candidate."""

from __future__ import annotations

import torch

from tmpt_helpers import batch_for, make_model

from text_mpt.model import cross_attentions

ROWS = [(0, "the movie was good", 1), (1, "a goal in the ball game", 0), (0, "awful plot", 0),
        (1, "we ate soup and bread", 1), (1, "code on a chip", 2)]


def _loss_and_grad(model, batch, repeated: bool):
    model.zero_grad()
    hidden, mask = model.encode(batch)
    fn = model.answer_logprobs_repeated if repeated else model.answer_logprobs
    tok = fn(hidden, mask, batch["cand_ids"], batch["cand_mask"])
    scores = model.candidate_scores(tok, batch["cand_mask"]).masked_fill(~batch["class_mask"], -1e4)
    rows = torch.arange(len(ROWS))
    gold = tok[rows, batch["labels"]].sum(-1) / batch["cand_mask"][rows, batch["labels"]].sum(-1)
    loss = -gold.mean() + 0.1 * torch.log_softmax(scores, -1).mean()  # both the gold loss and the scores
    loss.backward()
    return loss.detach(), scores.detach(), model.prompt.prompts.grad.clone()


def test_shared_cross_attention_equals_repeated_states():
    model = make_model(length=4).train()
    batch = batch_for(ROWS)
    fast = _loss_and_grad(model, batch, repeated=False)
    ref = _loss_and_grad(model, batch, repeated=True)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(fast[2].abs().sum()) > 0


def test_step_with_score_all_equals_the_repeated_path():
    model = make_model(length=4).eval()
    batch = batch_for(ROWS)
    with torch.no_grad():
        out = model.step(batch)
        hidden, mask = model.encode(batch)
        tok = model.answer_logprobs_repeated(hidden, mask, batch["cand_ids"], batch["cand_mask"])
    ref = model.candidate_scores(tok, batch["cand_mask"]).masked_fill(~batch["class_mask"], -1e4)
    torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-5)


def test_encoder_and_cross_projections_run_once_per_input():
    model = make_model(length=4).eval()
    batch = batch_for(ROWS)
    b, c = batch["cand_ids"].shape[:2]
    assert c > 1
    enc_rows: list[int] = []
    kv_rows: list[int] = []
    model.backbone.get_encoder().register_forward_hook(lambda m, a, kw, o: enc_rows.append(kw["inputs_embeds"].shape[0]),
                                                       with_kwargs=True)
    for attn in cross_attentions(model.backbone):
        attn.k.register_forward_hook(lambda m, a, o: kv_rows.append(a[0].shape[0]))
    with torch.no_grad():
        model.step(batch)
    assert enc_rows == [b]
    assert kv_rows == [b] * len(cross_attentions(model.backbone))  # not b * c: no per-candidate copies
