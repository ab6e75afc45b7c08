"""The batch format shared with the CLIP head."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .errors import DataError


def collate_vl(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Sample dicts → batch.

    * ``images``: FloatTensor (B, 3, H, W)
    * ``labels``: LongTensor (B,) (VQA: best answer index or -1)
    * ``task_ids``: LongTensor (B,) (``sample["task_id"]``, default 0)
    * ``indices``: LongTensor (B,) (``sample["index"]``, default the position in the batch)
    * ``questions``: list[str | None] (None for classification rows)
    * ``answer_scores``: FloatTensor (B, A_max) dense, zero-padded; A_max = the largest
      ``num_answers`` (or answer index + 1) in the batch; only present if a sample has scores
    * ``skipped``: list of ``{"task_id", "file", "error", "in_worker"}`` for unreadable images
      replaced or left out in this batch (see :func:`datasets_vl.robust.absorb_skipped`); usually empty
    * ``unscored``: BoolTensor (B,), only when every sample of the batch is an unreadable
      placeholder (evaluation splits): the rows are kept (a batch is never empty) and must not be scored

    ``None`` samples and unreadable placeholders (``sample["unreadable"]``) are dropped.
    """
    given = [s for s in samples if s is not None]
    if not given:
        raise DataError("collate_vl: the batch is empty (every sample was None)")
    rows = [s for s in given if not s.get("unreadable")] or given
    images = torch.stack([torch.as_tensor(s["image"], dtype=torch.float32) for s in rows])
    batch: dict[str, Any] = {
        "images": images,
        "labels": torch.tensor([int(s["label"]) for s in rows], dtype=torch.long),
        "task_ids": torch.tensor([int(s.get("task_id", 0)) for s in rows], dtype=torch.long),
        "indices": torch.tensor([int(s.get("index", i)) for i, s in enumerate(rows)], dtype=torch.long),
        "questions": [s.get("question") for s in rows],
    }
    scored = [s.get("answer_scores") for s in rows]
    if any(sc is not None for sc in scored):
        width = max(
            [int(s.get("num_answers") or 0) for s in rows] + [max(sc, default=-1) + 1 for sc in scored if sc]
        )
        dense = torch.zeros(len(rows), max(width, 1), dtype=torch.float32)
        for r, sc in enumerate(scored):
            for a, v in (sc or {}).items():
                dense[r, int(a)] = float(v)
        batch["answer_scores"] = dense
    batch["skipped"] = [dict(e, task_id=int(s.get("task_id", 0))) for s in given for e in s.get("skipped", ())]
    if rows[0].get("unreadable"):
        batch["unscored"] = torch.ones(len(rows), dtype=torch.bool)
    return batch
