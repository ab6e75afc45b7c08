"""Class texts with a learned context: tokenising, splicing the context in, one text-tower call.

A prompted class text is ``[SOS] [ctx_1 … ctx_l] name . [EOT]`` (class position ``end``),
``[SOS] [ctx_1 … ctx_l/2] name [ctx_l/2+1 … ctx_l] . [EOT]`` (``middle``) or
``[SOS] name [ctx_1 … ctx_l] . [EOT]`` (``front``); the learned context (CoOp's, or UPT's mapped
one: :mod:`mvlpt.clip.prompts`) replaces the words of a hand-written template such as "a photo of a".
Without learned context (VPT, or ``length: 0``) the class text is the task's own template
(``"a photo of a {}."``).

The fixed tokens of every class (start, name, full stop, end-of-text) are tokenised and
embedded once (:class:`ClassTextBank`, non-persistent buffers) and trimmed to the longest
prompt of the task. At each step the context is scattered in with one ``gather``
(:func:`assemble`), and the frozen text transformer reads the end-of-text token. The class prompts
of all the tasks a step needs go through the tower in **one** call (:meth:`ClassTextBank.features_many`):
each task's prompts are padded at the end to the longest, which the causal mask makes invisible to
every end-of-text token, so the features equal the per-task calls to float tolerance.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvlpt.core.errors import ConfigError

from .text_tower import TextTower

Tokenizer = Callable[..., Tensor]


#: tokenizer → {(context_length, text): ids row}; BPE tokenisation is pure Python and costs more than a
#: tiny text tower's forward, while prompt tuning tokenises the same few texts (class names, VQA
#: question forms) every step. Weakly keyed: entries go with their tokenizer.
_TOKEN_ROWS: "weakref.WeakKeyDictionary[Any, dict[tuple[int, str], Tensor]]" = weakref.WeakKeyDictionary()
TOKEN_CACHE_SIZE = 200_000  # rows per tokenizer (a few MB of int64 at context 32); emptied when full


def _tokenize(tokenizer: Tokenizer, texts: list[str], context_length: int) -> Tensor:
    try:
        return tokenizer(texts, context_length=context_length)
    except TypeError:  # tokenizers without a context_length argument
        return tokenizer(texts)[:, :context_length]


def tokenize(tokenizer: Tokenizer, texts: Sequence[str], context_length: int) -> Tensor:
    """Token ids ``(N, context_length)`` (truncated texts keep their end-of-text token). Each distinct
    text is tokenised once per tokenizer and context length (the ids are a pure function of both)."""
    texts = list(texts)
    try:
        rows = _TOKEN_ROWS.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        return _tokenize(tokenizer, texts, context_length)
    missing = list(dict.fromkeys(t for t in texts if (context_length, t) not in rows))
    if missing and len(rows) + len(missing) > TOKEN_CACHE_SIZE:
        rows.clear()
        missing = list(dict.fromkeys(texts))
    if missing:
        ids = _tokenize(tokenizer, missing, context_length)
        rows.update(((context_length, t), r.clone()) for t, r in zip(missing, ids))
    if not texts:
        return _tokenize(tokenizer, texts, context_length)
    return torch.stack([rows[(context_length, t)] for t in texts])


def start_offset(tokenizer: Tokenizer, ids: Tensor) -> int:
    """1 if every row starts with the tokenizer's start-of-text token (CLIP's BPE), else 0."""
    sot = getattr(tokenizer, "sot_token_id", None)
    return int(sot is not None and ids.numel() > 0 and bool((ids[:, 0] == sot).all()))


def layout(pool: Tensor, n_fixed: int, n_ctx: int, start: int, position: str = "end",
           name_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gather indices that splice ``n_ctx`` context tokens into ``n_fixed`` fixed tokens.

    Index ``j < n_fixed`` takes fixed token ``j``; ``n_fixed + m`` takes context token ``m``.

    Returns:
        ``(index (N, n_fixed + n_ctx), pool (N,))`` — the new end-of-text positions.
    """
    fixed = list(range(n_fixed))
    ctx = [n_fixed + m for m in range(n_ctx)]
    if position == "end" or name_lens is None:
        row = torch.tensor(fixed[:start] + ctx + fixed[start:], dtype=torch.long, device=pool.device)
        return row.unsqueeze(0).expand(pool.shape[0], -1).contiguous(), pool + n_ctx
    rows = []
    for r in range(pool.shape[0]):
        k = int(name_lens[r]) if name_lens is not None else 0
        head, name, tail = fixed[:start], fixed[start:start + k], fixed[start + k:]
        if position == "front":
            seq = head + name + ctx + tail
        elif position == "middle":
            h = n_ctx // 2
            seq = head + ctx[:h] + name + ctx[h:] + tail
        else:
            raise ConfigError(f"class_token_position must be end, middle or front, found {position!r}")
        rows.append(seq)
    index = torch.tensor(rows, dtype=torch.long, device=pool.device).reshape(pool.shape[0], n_fixed + n_ctx)
    return index, pool + n_ctx


def assemble(fixed: Tensor, index: Tensor, ctx: Tensor | None) -> Tensor:
    """Token embeddings ``(N, n, d)``: fixed embeddings ``(N, S, d)`` with context ``(l, d)`` or
    ``(N, l, d)`` spliced in at the positions of ``index`` ``(N, S + l)``."""
    if ctx is None or ctx.shape[-2] == 0:
        return fixed
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(fixed.shape[0], -1, -1)
    src = torch.cat([fixed, ctx.to(fixed.dtype)], dim=1)
    return torch.gather(src, 1, index.unsqueeze(-1).expand(-1, -1, src.shape[-1]))


class PromptedTexts:
    """Tokenise and encode texts with an optional learned context (used for VQA pairs and classes)."""

    def __init__(self, tower: TextTower, tokenizer: Tokenizer, n_ctx: int, position: str = "end"):
        self.tower, self.tokenizer, self.n_ctx, self.position = tower, tokenizer, n_ctx, position

    def prepare(self, texts: Sequence[str], names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Token ids, fixed embeddings, gather index and end-of-text positions, trimmed."""
        limit = self.tower.context_length - self.n_ctx if not self.tower.unsupported else 10**9
        device = self.tower.model.logit_scale.device
        ids = tokenize(self.tokenizer, texts, min(limit, self._tok_context())).to(device)
        if self.n_ctx == 0 or self.tower.unsupported:
            return {"ids": ids}
        pool = self.tower.pool_index(ids)
        n_fixed = int(pool.max()) + 1
        ids = ids[:, :n_fixed]
        start = start_offset(self.tokenizer, ids)
        name_lens = None
        if names is not None and self.position != "end":
            name_ids = tokenize(self.tokenizer, names, min(limit, self._tok_context())).to(device)
            name_lens = (self.tower.pool_index(name_ids) - start).clamp(min=0)
        index, pool = layout(pool, n_fixed, self.n_ctx, start, self.position, name_lens)
        with torch.no_grad():
            fixed = self.tower.embed(ids)
        return {"ids": ids, "fixed": fixed, "index": index, "pool": pool}

    def _tok_context(self) -> int:
        return int(getattr(self.tokenizer, "context_length", None) or self.tower.model.context_length)

    def encode(self, parts: dict[str, Tensor], ctx: Tensor | None, use_checkpoint: bool = False) -> Tensor:
        """Features ``(N, e)`` of prepared texts with context ``(l, d)`` / ``(N, l, d)`` (or None)."""
        if ctx is None or "fixed" not in parts:
            return self.tower.encode_ids(parts["ids"], use_checkpoint)
        x = assemble(parts["fixed"], parts["index"], ctx)
        return self.tower.encode(x, parts["pool"], use_checkpoint)

    def encode_many(self, parts: Sequence[dict[str, Tensor]], ctxs: Sequence[Tensor],
                    use_checkpoint: bool = False) -> list[Tensor]:
        """:meth:`encode` of several prepared text sets (each with its context) in one tower call:
        the assembled embeddings are zero-padded at the end to the longest set and stacked; the causal
        mask keeps the padding out of every end-of-text feature."""
        if len(parts) == 1:
            return [self.encode(parts[0], ctxs[0], use_checkpoint)]
        xs = [assemble(p["fixed"], p["index"], c) for p, c in zip(parts, ctxs)]
        n = max(x.shape[1] for x in xs)
        x = torch.cat([F.pad(x, (0, 0, 0, n - x.shape[1])) if x.shape[1] < n else x for x in xs])
        out = self.tower.encode(x, torch.cat([p["pool"] for p in parts]), use_checkpoint)
        return list(out.split([t.shape[0] for t in xs]))


class ClassTextBank(nn.Module):
    """Cached fixed parts of every classification task's class prompts (non-persistent buffers).

    Args:
        texts_per_task: ``{task_id: (class texts, class names)}``.
    """

    def __init__(self, encoder: PromptedTexts, texts_per_task: dict[int, tuple[list[str], list[str]]]):
        super().__init__()
        self.encoder = encoder
        self.keys: dict[int, list[str]] = {}
        for k, (texts, names) in texts_per_task.items():
            parts = encoder.prepare(texts, names)
            self.keys[k] = sorted(parts)
            for name, t in parts.items():
                self.register_buffer(f"t{k}_{name}", t, persistent=False)

    def parts(self, task: int) -> dict[str, Tensor]:
        return {n: getattr(self, f"t{task}_{n}") for n in self.keys[task]}

    def features(self, task: int, ctx: Tensor | None, use_checkpoint: bool = False) -> Tensor:
        """Class text features ``(C, e)`` of ``task`` with context ``(l, d)`` / ``(C, l, d)`` (or None)."""
        parts = self.parts(task)
        if ctx is not None and ctx.dim() == 3:  # class-specific context: first C rows
            ctx = ctx[: parts["ids"].shape[0]]
        return self.encoder.encode(parts, ctx, use_checkpoint)

    def features_many(self, ctxs: dict[int, Tensor], use_checkpoint: bool = False) -> dict[int, Tensor]:
        """:meth:`features` of every task in ``ctxs`` (``{task: context}``) from **one** text-tower call."""
        tasks = list(ctxs)
        parts = [self.parts(k) for k in tasks]
        if any("fixed" not in p for p in parts):  # no splicing possible: the towers' own path, per task
            return {k: self.features(k, ctxs[k], use_checkpoint) for k in tasks}
        cs = [c[: p["ids"].shape[0]] if c.dim() == 3 else c for p, c in zip(parts, (ctxs[k] for k in tasks))]
        return dict(zip(tasks, self.encoder.encode_many(parts, cs, use_checkpoint)))
