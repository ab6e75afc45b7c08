"""Train the toy task model from the command line (for subprocess / torchrun tests).

    python tests/core/toy_train.py RUN_DIR [key=value ...]

Extra keys outside TrainConfig: ``sleep_per_step`` (seconds, to leave time for a kill),
``nan_at`` (a step whose loss is made NaN).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyTaskModel, toy_collate  # noqa: E402

from mvlpt.core import DecomposedPrompt, Trainer, TrainConfig, load_config  # noqa: E402


class SlowToy(ToyTaskModel):
    def __init__(self, *a, sleep=0.0, nan_at=-1, **k):
        super().__init__(*a, **k)
        self.sleep, self.nan_at, self.calls = sleep, nan_at, 0

    def step(self, batch):
        self.calls += 1
        if self.sleep:
            time.sleep(self.sleep)
        out = super().step(batch)
        if self.calls == self.nan_at:
            out.loss = out.loss * float("nan")
        return out


def main(argv: list[str]) -> None:
    run_dir, rest = argv[0], argv[1:]
    extra = {k: float(v) for k, v in (a.split("=", 1) for a in rest if a.split("=")[0] in ("sleep_per_step", "nan_at"))}
    overrides = [a for a in rest if a.split("=")[0] not in ("sleep_per_step", "nan_at")]
    base = {"max_steps": 12, "batch_size": 8, "log_every": 1, "save_every": 3, "progress": False, "keep_last": 10,
            "optim": {"name": "adamw", "lr": 0.05}, "clip_grad_norm": 0.0}
    cfg = load_config(TrainConfig, data=base, overrides=overrides)
    torch.manual_seed(0)
    model = SlowToy(DecomposedPrompt(2, (4, 8)), sleep=extra.get("sleep_per_step", 0.0), nan_at=int(extra.get("nan_at", -1)))
    trainer = Trainer(model, [ToyDataset(0), ToyDataset(1, n=50)], toy_collate, cfg, run_dir,
                      eval_datasets=[ToyDataset(0, n=21), ToyDataset(1, n=10)])
    out = trainer.fit()
    if trainer.info.is_main:
        print("FINAL", out["final"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
