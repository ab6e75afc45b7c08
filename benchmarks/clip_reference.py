"""The compute pattern of the CoOp / MVLPT reference code, re-implemented for the CLIP benchmark.

What the reference training step does (CoOp's ``CustomCLIP`` and MVLPT's multitask ``CustomCLIP``,
``TRAINER.CUT_CONTEXTLEN False``, precision ``fp16``), and so what this module does:

* the whole CLIP is cast to half precision once (OpenAI CLIP's ``build_model`` → ``convert_weights``;
  here open_clip's identical ``convert_weights_to_lp``) and the prompts are half-precision parameters
  trained by SGD — no autocast, no master weights;
* every step builds the prompt of **every class of every task** (the multitask class union) by
  concatenating ``[SOS] + context + suffix`` at the full context length (77), with the fixed token
  embeddings kept as buffers (CoOp's ``token_prefix`` / ``token_suffix``), and runs all of them
  through the text transformer — nothing cached, nothing trimmed, also when nothing on the text side
  trains (VPT);
* one prompt set is shared by all tasks (MVLPT's MCoOp / MVPT / MUPT source training);
* VPT (MVLPT's ``ImageEncoder``): prompt tokens inserted after the class token; deep prompts replace
  them before every later block; the class token is pooled;
* UPT (MVLPT's ``forward_mvlpt_proj``): text context and all visual prompt tokens are projected to
  a common width, mixed by a one-layer transformer (run in fp32), and projected back;
* logits over the whole union, multiplied by a 0/1 mask of the sample's task
  (``MULTITASK_LABEL_PERTASK``), cross-entropy against the label's global column.

The class names are placed at the end of the prompt (``CLASS_TOKEN_POSITION end``): the reference's
``middle``/``front`` positions add a Python loop over all classes every step, so ``end`` is its
fastest form and the conservative baseline.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Tokenizer = Callable[..., Tensor]


def cast_clip(clip_model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the CLIP weights like OpenAI CLIP's ``convert_weights`` (linear, conv, attention, projections)."""
    from open_clip.model import convert_weights_to_lp

    if dtype != torch.float32:
        convert_weights_to_lp(clip_model, dtype)
    return clip_model


class ReferencePrompts(nn.Module):
    """CoOp/MVLPT prompt learner: shared text context, shallow + deep VPT tokens, optional UPT projection."""

    def __init__(self, clip_model: nn.Module, tokenizer: Tokenizer, classnames: Sequence[str], n_text: int,
                 n_visual: int, dtype: torch.dtype, upt_width: int = 128):
        super().__init__()
        width_t = clip_model.ln_final.weight.shape[0]
        visual = clip_model.visual
        width_v = visual.conv1.weight.shape[0]
        layers_v = len(visual.transformer.resblocks)
        self.n_text, self.n_visual, self.dtype = n_text, n_visual, dtype
        self.ctx = nn.Parameter(torch.randn(n_text, width_t, dtype=dtype) * 0.02) if n_text else None
        self.vpt = self.vpt_deep = None
        if n_visual:
            patch = visual.conv1.weight.shape[-1]
            val = math.sqrt(6.0 / float(3 * patch * patch + width_v))
            self.vpt = nn.Parameter(torch.empty(1, n_visual, width_v, dtype=dtype).uniform_(-val, val))
            self.vpt_deep = nn.Parameter(torch.empty(layers_v - 1, n_visual, width_v, dtype=dtype).uniform_(-val, val))
        self.upt = n_text > 0 and n_visual > 0
        if self.upt:
            from open_clip.transformer import Transformer

            self.t_pre, self.t_post = nn.Linear(width_t, upt_width).to(dtype), nn.Linear(upt_width, width_t).to(dtype)
            self.v_pre, self.v_post = nn.Linear(width_v, upt_width).to(dtype), nn.Linear(upt_width, width_v).to(dtype)
            self.mixer = Transformer(width=upt_width, layers=1, heads=1)  # fp32, as MVLPT runs it
        prefix = " ".join(["X"] * n_text) if n_text else "a photo of a"  # MVLPT's prefix when only VPT trains
        texts = [(prefix + " " + c + ".").strip() for c in classnames]
        ids = tokenizer(texts, context_length=clip_model.context_length)  # full context length (77)
        ids = ids.to(clip_model.token_embedding.weight.device)
        with torch.no_grad():
            emb = clip_model.token_embedding(ids).to(dtype)
        self.register_buffer("tokenized", ids, persistent=False)
        self.register_buffer("token_prefix", emb[:, :1], persistent=False)
        self.register_buffer("token_suffix", emb[:, 1 + n_text:], persistent=False)

    def mapped(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(text context, shallow VPT, deep VPT) after the UPT projection (identity without UPT)."""
        if not self.upt:
            return self.ctx, self.vpt, self.vpt_deep
        vis = torch.cat([self.vpt, self.vpt_deep], dim=0)  # (L, n, d_v)
        t = self.t_pre(self.ctx).reshape(1, -1, self.t_pre.out_features)
        v = self.v_pre(vis.reshape(1, -1, vis.shape[-1]))
        z = self.mixer(torch.cat([t, v], dim=1).float()).to(self.dtype)
        ctx = self.t_post(z[:, : t.shape[1]]).reshape(self.ctx.shape)
        v = self.v_post(z[:, t.shape[1]:]).reshape(vis.shape)
        return ctx, v[:1], v[1:]

    def class_prompts(self, ctx: Tensor | None) -> Tensor:
        """Token embeddings of all class prompts ``(C, 77, d)``."""
        n_cls = self.token_prefix.shape[0]
        parts = [self.token_prefix]
        if ctx is not None:
            parts.append(ctx.unsqueeze(0).expand(n_cls, -1, -1))
        return torch.cat(parts + [self.token_suffix], dim=1)


class ReferenceCLIP(nn.Module):
    """The reference training forward: logits over the class union, masked to each sample's task."""

    def __init__(self, clip_model: nn.Module, tokenizer: Tokenizer, classnames: Sequence[str],
                 task_sizes: Sequence[int], n_text: int, n_visual: int, dtype: torch.dtype):
        super().__init__()
        self.clip = cast_clip(clip_model, dtype)
        self.clip.requires_grad_(False)
        self.dtype = dtype
        self.prompt_learner = ReferencePrompts(self.clip, tokenizer, classnames, n_text, n_visual, dtype)
        sizes = torch.tensor(list(task_sizes))
        self.register_buffer("task_start", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.register_buffer("task_end", torch.cumsum(sizes, 0), persistent=False)

    def prompt_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.prompt_learner.parameters() if p.requires_grad]

    def encode_text(self, prompts: Tensor) -> Tensor:
        c = self.clip
        x = prompts + c.positional_embedding.to(self.dtype)
        x = c.transformer(x, attn_mask=c.attn_mask)
        x = c.ln_final(x).to(self.dtype)
        eot = self.prompt_learner.tokenized.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ c.text_projection

    def encode_image(self, images: Tensor, vpt: Tensor | None, vpt_deep: Tensor | None) -> Tensor:
        v = self.clip.visual
        x = v.conv1(images.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        b, n = x.shape[0], 0
        if vpt is not None:
            n = vpt.shape[1]
            x = torch.cat([x[:, :1], vpt.expand(b, -1, -1).to(x.dtype), x[:, 1:]], dim=1)
        for i, blk in enumerate(v.transformer.resblocks):
            if i > 0 and vpt_deep is not None:
                x = torch.cat([x[:, :1], vpt_deep[i - 1].expand(b, -1, -1).to(x.dtype), x[:, 1 + n:]], dim=1)
            x = blk(x)
        x = v.ln_post(x[:, 0])
        return x @ v.proj if v.proj is not None else x

    def forward(self, images: Tensor, task_ids: Tensor) -> Tensor:
        ctx, vpt, vpt_deep = self.prompt_learner.mapped()
        img = self.encode_image(images, vpt, vpt_deep)
        txt = self.encode_text(self.prompt_learner.class_prompts(ctx))
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        logits = self.clip.logit_scale.exp() * img @ txt.t()
        cols = torch.arange(logits.shape[1], device=logits.device)[None]
        select = (cols >= self.task_start[task_ids, None]) & (cols < self.task_end[task_ids, None])
        return logits * select.to(logits.dtype)

    def loss(self, images: Tensor, task_ids: Tensor, global_labels: Tensor) -> Tensor:
        return F.cross_entropy(self.forward(images, task_ids), global_labels)
