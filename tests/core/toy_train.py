"""Train the toy task model from the command line (for subprocess / torchrun tests).

    python tests/core/toy_train.py RUN_DIR [key=value ...]

Extra keys outside TrainConfig: ``sleep_per_step`` (seconds per step), ``nan_at`` (a step whose
loss is made NaN), ``pause_at`` (at that training-step call, write ``RUN_DIR/paused`` and block
until a signal arrives: tests synchronise a kill on that file, not on the clock).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyTaskModel, toy_collate  # noqa: E402

from mvlpt.core import DecomposedPrompt, Trainer, TrainConfig, load_config  # noqa: E402


class SlowToy(ToyTaskModel):
    def __init__(self, *a, sleep=0.0, nan_at=-1, pause_at=-1, marker: Path | None = None, **k):
        super().__init__(*a, **k)
        self.sleep, self.nan_at, self.pause_at, self.marker, self.calls = sleep, nan_at, pause_at, marker, 0

    def step(self, batch):
        self.calls += 1
        if self.calls == self.pause_at and self.marker is not None:
            self.marker.write_text(str(self.calls))
            while True:  # until the test's signal (SIGINT raises KeyboardInterrupt here)
                time.sleep(0.01)
        if self.sleep:
            time.sleep(self.sleep)
        out = super().step(batch)
        if self.calls == self.nan_at:
            out.loss = out.loss * float("nan")
        return out


def main(argv: list[str]) -> None:
    # a process started in the background of a non-interactive shell (CI) inherits SIGINT as ignored, and
    # Python then installs no KeyboardInterrupt handler: restore it, so that the tests' SIGINT is Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_dir, rest = argv[0], argv[1:]
    keys = ("sleep_per_step", "nan_at", "pause_at")
    extra = {k: float(v) for k, v in (a.split("=", 1) for a in rest if a.split("=")[0] in keys)}
    overrides = [a for a in rest if a.split("=")[0] not in keys]
    base = {"max_steps": 12, "batch_size": 8, "log_every": 1, "save_every": 3, "progress": False, "keep_last": 10,
            "optim": {"name": "adamw", "lr": 0.05}, "clip_grad_norm": 0.0}
    cfg = load_config(TrainConfig, data=base, overrides=overrides)
    torch.manual_seed(0)
    model = SlowToy(DecomposedPrompt(2, (4, 8)), sleep=extra.get("sleep_per_step", 0.0), nan_at=int(extra.get("nan_at", -1)),
                    pause_at=int(extra.get("pause_at", -1)), marker=Path(run_dir) / "paused")
    trainer = Trainer(model, [ToyDataset(0), ToyDataset(1, n=50)], toy_collate, cfg, run_dir,
                      eval_datasets=[ToyDataset(0, n=21), ToyDataset(1, n=10)])
    out = trainer.fit()
    if trainer.info.is_main:
        print("FINAL", out["final"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
