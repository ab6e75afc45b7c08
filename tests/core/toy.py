"""A toy head for testing the core: a frozen random 'backbone' reading a soft prompt."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mvlpt.core import StepOutput, TaskModel
from mvlpt.core.prompts import PromptModule


class ToyDataset(Dataset):
    """Inputs x ~ N(0, 1) of width d; label = argmax of a task-specific linear map."""

    def __init__(self, task: int, n: int = 64, d: int = 8, classes: int = 3):
        g = torch.Generator().manual_seed(100 + task)
        self.x = torch.randn(n, d, generator=g)
        w = torch.randn(d, classes, generator=g)
        self.y = (self.x @ w).argmax(-1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "y": int(self.y[i])}


def toy_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "x": torch.stack([s["x"] for s in samples]),
        "labels": torch.tensor([s["y"] for s in samples]),
        "task_ids": torch.tensor([s["task_id"] for s in samples]),
        "indices": torch.tensor([s["index"] for s in samples]),
    }


class ToyTaskModel(TaskModel):
    """logits = backbone(x + mean_l(prompt) ⊙ x) with a frozen 2-layer MLP backbone."""

    def __init__(self, prompt: PromptModule, d: int = 8, classes: int = 3, num_tasks: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, classes))
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.prompt = prompt
        self.task_names = [f"task{k}" for k in range(num_tasks)]

    def prompt_modules(self):
        return {"prompt": self.prompt}

    def frozen_modules(self):
        return [self.backbone]

    def _logits(self, batch):
        p = self.prompt(batch["task_ids"])  # (B, l, d) or (B, L, l, d)
        p = p.reshape(p.shape[0], -1, p.shape[-1]).mean(1)
        h = batch["x"] * (1 + 10 * p)
        return self.backbone(h), h

    def step(self, batch):
        logits, h = self._logits(batch)
        loss = F.cross_entropy(logits, batch["labels"])
        return StepOutput(loss=loss, logits=logits, hidden=h, metrics={})

    @torch.no_grad()
    def predict(self, batch):
        logits, _ = self._logits(batch)
        pred = logits.argmax(-1)
        return [
            {"task_id": int(t), "index": int(i), "correct": bool(p == y)}
            for t, i, p, y in zip(batch["task_ids"], batch["indices"], pred, batch["labels"])
        ]

    def compute_metrics(self, records):
        acc = sum(r["correct"] for r in records) / max(1, len(records))
        return {"accuracy": acc, "score": acc, "n": float(len(records))}
