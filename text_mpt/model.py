"""A prompted frozen T5 as a :class:`~mvlpt.core.task_model.TaskModel`.

The task's soft prompt ``(B, l, d)`` is prepended to the **encoder** input embeddings and
the attention mask is extended by ``l`` ones; the decoder is untouched. Training, rank
classification and :meth:`PromptedT5.generate` share one code path (:meth:`PromptedT5.encode`),
so they always see the same prompt. Task ids are per sample: one batch may mix tasks.

Distillation signals (source stage):

* ``logits`` — the per-candidate sequence scores ``(B, C)`` (log-likelihood of each verbalizer,
  ``sum`` or ``mean`` over its tokens); ``logit_mask`` marks each sample's real candidates, so tasks
  with different label counts share a batch.
* ``hidden`` — the encoder's last hidden state ``(B, l + n, h)``, prompt positions included,
  masked by the extended attention mask.

The task loss is the teacher-forced cross-entropy of the gold answer (mean over its tokens,
then over the batch), read off the same decoder pass that scores the candidates.

Candidate scoring runs the encoder once per input. The decoder runs over ``B × C`` candidate rows,
but the encoder states are not copied per candidate: every decoder layer's cross-attention keys and
values are projected once per input and handed to the decoder as a filled cross-attention cache
(:func:`shared_cross_cache`), so the projections — the bulk of a short answer's decoder cost — are
not repeated ``C`` times either. The result equals decoding repeated encoder states (float tolerance).
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from transformers.modeling_outputs import BaseModelOutput

from mvlpt.core.errors import ShapeMismatchError
from mvlpt.core.prompts import PromptModule
from mvlpt.core.task_model import StepOutput, TaskModel

from .metrics import compute_metrics
from .tasks import TaskSpec


def cross_attentions(backbone: nn.Module) -> list[nn.Module] | None:
    """The decoder layers' cross-attention modules (``T5Attention``), or None for another architecture."""
    try:
        mods = [blk.layer[1].EncDecAttention for blk in backbone.get_decoder().block]
    except (AttributeError, IndexError, TypeError):
        return None
    return mods if all(hasattr(m, "k") and hasattr(m, "v") and hasattr(m, "key_value_proj_dim") for m in mods) else None


def shared_cross_cache(backbone: nn.Module, hidden: Tensor, repeats: int) -> Any | None:
    """An ``EncoderDecoderCache`` whose cross-attention part holds, for every decoder layer, the keys and
    values of ``hidden`` ``(B, n, h)`` projected **once** per input and repeated for ``repeats`` decoder
    rows per input (candidate-minor, as ``repeat_interleave``); marked as filled, so the decoder does not
    project the encoder states again. None where the backbone or library does not allow it."""
    mods = cross_attentions(backbone)
    if mods is None:
        return None
    try:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    except ImportError:
        return None
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    b, n = hidden.shape[:2]
    for i, attn in enumerate(mods):
        k = attn.k(hidden).view(b, n, -1, attn.key_value_proj_dim).transpose(1, 2)
        v = attn.v(hidden).view(b, n, -1, attn.key_value_proj_dim).transpose(1, 2)
        cache.cross_attention_cache.update(k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0), i)
        cache.is_updated[i] = True
    return cache


@functools.lru_cache(maxsize=None)
def _cache_kwarg(model_type: type) -> str:
    """``cache`` (transformers 5) or ``past_key_values`` (4.x)."""
    return "cache" if "cache" in inspect.signature(model_type.forward).parameters else "past_key_values"


def normalize_answer(text: str) -> str:
    """Lower case, collapsed spaces, no surrounding punctuation (generation → verbalizer matching)."""
    return re.sub(r"\s+", " ", text).strip().strip(".!?,;:\"'").strip().lower()


class PromptedT5(TaskModel):
    """Frozen T5 + a prompt module on the encoder input.

    Args:
        backbone: a ``T5ForConditionalGeneration`` (frozen by the caller; may be shared by several models).
        prompt: prompt module with shape ``(l, d_model)``.
        specs: the task specs, index = task id.
        tokenizer: decodes generations (and candidates) for :meth:`predict`.
        scoring: ``sum`` or ``mean`` of a candidate's token log-probabilities.
        eval_mode: ``rank``, ``generate`` or ``both`` (see :class:`~text_mpt.config.EvalConfig`).
        max_new_tokens: generation length.
        score_all: score every candidate in :meth:`step` (needed for KL distillation and train accuracy);
            ``False`` runs the decoder on the gold answer only (cheaper).
        backbone_dropout: keep the backbone's dropout active in training mode.
    """

    def __init__(self, backbone: nn.Module, prompt: PromptModule, specs: Sequence[TaskSpec], tokenizer: Any = None,
                 scoring: str = "sum", eval_mode: str = "rank", max_new_tokens: int = 8, score_all: bool = True,
                 backbone_dropout: bool = False):
        super().__init__()
        d_model = backbone.config.d_model
        if prompt.layers is not None or prompt.dim != d_model:
            raise ShapeMismatchError(f"the prompt has shape {prompt.shape}; this T5 needs (l, {d_model}) (d_model={d_model})")
        if prompt.num_tasks != len(specs):
            raise ShapeMismatchError(f"the prompt has {prompt.num_tasks} task(s) but {len(specs)} task(s) were given")
        self.backbone = backbone
        self.prompt = prompt
        self.specs = list(specs)
        self.task_names = [s.name for s in self.specs]
        self.tokenizer = tokenizer
        self.scoring, self.eval_mode, self.max_new_tokens = scoring, eval_mode, max_new_tokens
        self.score_all = score_all
        self.backbone_dropout = backbone_dropout

    # ------------------------------------------------------------------ TaskModel API
    def prompt_modules(self) -> Mapping[str, nn.Module]:
        return {"prompt": self.prompt}

    def frozen_modules(self):
        return () if self.backbone_dropout else (self.backbone,)

    # ------------------------------------------------------------------ forward pieces
    def encode(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Encoder output with the prompt prepended: hidden ``(B, l + n, h)`` and mask ``(B, l + n)``."""
        ids, att = batch["input_ids"], batch["attention_mask"]
        emb = self.backbone.get_input_embeddings()(ids)
        p = self.prompt(batch["task_ids"]).to(emb.dtype)
        x = torch.cat([p, emb], dim=1)
        mask = torch.cat([att.new_ones(att.shape[0], p.shape[1]), att], dim=1)
        hidden = self.backbone.get_encoder()(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return hidden, mask

    def decoder_logits(self, hidden: Tensor, mask: Tensor, decoder_input_ids: Tensor) -> Tensor:
        """Decoder logits ``(B, T, V)`` for given encoder states and decoder inputs."""
        out = self.backbone(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                            decoder_input_ids=decoder_input_ids, use_cache=False)
        return out.logits

    def answer_logprobs(self, hidden: Tensor, mask: Tensor, ids: Tensor, ids_mask: Tensor) -> Tensor:
        """Token log-probabilities of answers ``ids`` ``(B, C, L)`` (one row of ``hidden`` per sample): ``(B, C, L)``,
        zero on padding."""
        b, c, l = ids.shape
        flat = ids.reshape(b * c, l)
        dec_in = self.backbone._shift_right(flat)
        cache = shared_cross_cache(self.backbone, hidden, c) if c > 1 else None
        if c == 1:  # one answer per input: the encoder states as they are, no copy
            logits = self.decoder_logits(hidden, mask, dec_in)
        elif cache is None:  # another architecture: the states repeated per candidate
            logits = self.decoder_logits(hidden.repeat_interleave(c, 0), mask.repeat_interleave(c, 0), dec_in)
        else:  # the decoder reads the cached projections; the states are only a shape here (a stride-0 view)
            shape_only = hidden.new_zeros(()).expand(b * c, *hidden.shape[1:])
            logits = self.backbone(encoder_outputs=BaseModelOutput(last_hidden_state=shape_only),
                                   attention_mask=mask.repeat_interleave(c, 0), decoder_input_ids=dec_in,
                                   use_cache=True, **{_cache_kwarg(type(self.backbone)): cache}).logits
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, flat.unsqueeze(-1)).squeeze(-1)
        return logp.reshape(b, c, l) * ids_mask.reshape(b, c, l)

    def answer_logprobs_repeated(self, hidden: Tensor, mask: Tensor, ids: Tensor, ids_mask: Tensor) -> Tensor:
        """:meth:`answer_logprobs` the straightforward way (encoder states repeated per candidate): the
        reference of the exactness tests."""
        b, c, l = ids.shape
        flat = ids.reshape(b * c, l)
        logits = self.decoder_logits(hidden.repeat_interleave(c, 0), mask.repeat_interleave(c, 0),
                                     self.backbone._shift_right(flat))
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, flat.unsqueeze(-1)).squeeze(-1)
        return logp.reshape(b, c, l) * ids_mask.reshape(b, c, l)

    def candidate_scores(self, token_logp: Tensor, cand_mask: Tensor) -> Tensor:
        """Per-candidate scores ``(B, C)`` from token log-probs (``sum`` or ``mean``)."""
        s = token_logp.sum(-1)
        if self.scoring == "mean":
            s = s / cand_mask.sum(-1).clamp_min(1)
        return s

    # ------------------------------------------------------------------ training
    def step(self, batch: Mapping[str, Tensor]) -> StepOutput:
        labels = batch["labels"]
        if bool((labels < 0).any()):
            raise ValueError("training batches need a gold label for every sample (found -1)")
        hidden, mask = self.encode(batch)
        cand, cmask = batch["cand_ids"], batch["cand_mask"]
        rows = torch.arange(labels.shape[0], device=labels.device)
        metrics: dict[str, float] = {}
        logits = logit_mask = None
        if self.score_all:
            tok = self.answer_logprobs(hidden, mask, cand, cmask)
            gold_tok, gold_mask = tok[rows, labels], cmask[rows, labels]
            logit_mask = batch["class_mask"]
            logits = self.candidate_scores(tok, cmask).masked_fill(~logit_mask, -1e4)
            metrics["train_accuracy"] = float((logits.argmax(-1) == labels).float().mean())
        else:
            gold_ids, gold_mask = cand[rows, labels].unsqueeze(1), cmask[rows, labels].unsqueeze(1)
            gold_tok = self.answer_logprobs(hidden, mask, gold_ids, gold_mask).squeeze(1)
            gold_mask = gold_mask.squeeze(1)
        per_sample = -gold_tok.sum(-1) / gold_mask.sum(-1).clamp_min(1)
        return StepOutput(loss=per_sample.mean(), logits=logits, logit_mask=logit_mask, hidden=hidden,
                          hidden_mask=mask.bool(), metrics=metrics)

    def per_sample_loss(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Teacher-forced gold-answer loss of every sample ``(B,)`` (for checks and analysis)."""
        hidden, mask = self.encode(batch)
        rows = torch.arange(batch["labels"].shape[0], device=hidden.device)
        ids, m = batch["cand_ids"][rows, batch["labels"]], batch["cand_mask"][rows, batch["labels"]]
        tok = self.answer_logprobs(hidden, mask, ids.unsqueeze(1), m.unsqueeze(1)).squeeze(1)
        return -tok.sum(-1) / m.sum(-1).clamp_min(1)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, batch: Mapping[str, Tensor], max_new_tokens: int | None = None) -> Tensor:
        """Greedy generation under the task prompts: token ids ``(B, 1 + T)`` (decoder start token first).

        The encoder runs here (prompt prepended) and Hugging Face ``generate`` receives its
        ``encoder_outputs`` with the extended attention mask, so decoding sees exactly the
        encoder states used in training and rank classification."""
        hidden, mask = self.encode(batch)
        return self._generate_from(hidden, mask, max_new_tokens or self.max_new_tokens)

    def _generate_from(self, hidden: Tensor, mask: Tensor, max_new_tokens: int) -> Tensor:
        return self.backbone.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                                      max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)

    def _decode(self, ids: Tensor) -> list[str]:
        if self.tokenizer is None:
            raise ValueError("PromptedT5 needs a tokenizer to decode generations")
        return self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)

    def _parse(self, text: str, candidates: list[str], spec: TaskSpec) -> tuple[int, float | None]:
        """Generated text → (candidate index or -1, number for regression or None)."""
        norm = normalize_answer(text)
        if spec.regression is not None:
            try:
                return -1, float(norm)
            except ValueError:
                return -1, None
        for j, c in enumerate(candidates):
            if normalize_answer(c) == norm:
                return j, None
        return -1, None

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Tensor]) -> list[dict[str, Any]]:
        """Records with rank-classification predictions (``pred``, ``answer``, ``scores``), the gold
        answer's loss (``loss``, as in training) and, in ``generate``/``both`` mode, the generation
        (``gen_text``, ``gen_pred``: candidate index or -1; ``gen_value`` for regression)."""
        hidden, mask = self.encode(batch)
        tok = self.answer_logprobs(hidden, mask, batch["cand_ids"], batch["cand_mask"])
        scores = self.candidate_scores(tok, batch["cand_mask"]).masked_fill(~batch["class_mask"], float("-inf"))
        preds = scores.argmax(-1).tolist()
        gen_texts: list[str | None] = [None] * len(preds)
        if self.eval_mode in ("generate", "both"):
            gen_texts = self._decode(self._generate_from(hidden, mask, self.max_new_tokens))
        records = []
        for i, tid in enumerate(batch["task_ids"].tolist()):
            spec = self.specs[tid]
            n_c = int(batch["class_mask"][i].sum())
            cands = self._decode(batch["cand_ids"][i, :n_c]) if (self.tokenizer is not None) else []
            label = int(batch["labels"][i])
            value = float(batch["values"][i])
            loss = None
            if label >= 0:
                gold_len = batch["cand_mask"][i, label].sum().clamp_min(1)
                loss = round(float(-tok[i, label].sum() / gold_len), 5)
            rec: dict[str, Any] = {
                "task_id": tid, "index": int(batch["indices"][i]), "example_id": int(batch["example_ids"][i]),
                "label": label if label >= 0 else None, "value": value if value == value else None,
                "loss": loss, "pred": preds[i], "scores": [round(float(s), 5) for s in scores[i, :n_c]],
                "answer": cands[preds[i]] if cands else None,
            }
            if spec.regression is not None:
                rec["pred_value"] = spec.regression[0] + preds[i] * spec.regression[2]
            if gen_texts[i] is not None:
                gp, gv = self._parse(gen_texts[i], cands, spec)
                rec.update(gen_text=gen_texts[i], gen_pred=gp, gen_value=gv)
                if spec.regression is not None:
                    rec["gen_pred_value"] = gv
            records.append(rec)
        return records

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        return compute_metrics(self.specs, records, self.eval_mode)

    # ------------------------------------------------------------------ health figures (core contract)
    metric_scale = 1.0  # accuracies are fractions

    @torch.no_grad()
    def reference_norms(self) -> dict[str, float]:
        """The prompt should stay near the size of T5's input tokens: the mean row norm of its token embeddings."""
        return {"prompt": float(self.backbone.get_input_embeddings().weight.float().norm(dim=-1).mean())}

    def chance_levels(self) -> dict[str, float]:
        """``"<task>/accuracy"``: 1 / number of labels (the health check also uses the majority share)."""
        return {f"{s.name}/accuracy": 1.0 / s.num_classes for s in self.specs
                if s.regression is None and "accuracy" in s.metrics and s.num_classes > 1}
