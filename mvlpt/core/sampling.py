"""Multi-task data: a dataset over several tasks and a deterministic, resumable batch sampler.

* :class:`MultiTaskDataset` indexes ``(task_id, index)`` pairs into per-task datasets and
  adds ``"task_id"`` and ``"index"`` to each (dict) sample.
* :class:`MultiTaskBatchSampler` draws mixed-task batches. The task of each sample is drawn
  with probabilities from the sampling strategy; within a task, examples follow a seeded
  permutation per pass (no repeats within a pass). Batch ``n`` depends only on
  ``(seed, n)``'s history, so skipping ``n`` batches (:meth:`MultiTaskBatchSampler.load_state_dict`)
  resumes exactly. Under data parallelism every rank draws the same *global* batch and
  keeps its own contiguous slice: ranks never overlap, and N ranks at batch B/N see the
  same examples as one process at batch B.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence, get_args

import torch
from torch.utils.data import Dataset, Sampler

from .errors import ConfigError, DataError

#: What a few-shot draw does with a label (class) that has fewer than K examples: ``error`` (say so
#: before training), ``largest`` (lower K to that count for every label) or ``all`` (the short labels
#: give all their examples, the others K each: Dassl's few-shot rule, which CoOp uses). The one
#: vocabulary of the text head's ``few_shot_if_too_few``, the CLIP head's ``data.if_too_few`` and
#: :func:`datasets_vl.fewshot.sample_few_shot`.
IfTooFew = Literal["error", "largest", "all"]
IF_TOO_FEW: tuple[str, ...] = get_args(IfTooFew)


def check_if_too_few(value: str, key: str, allowed: Sequence[str] = IF_TOO_FEW) -> None:
    """:class:`ConfigError` naming ``key`` unless ``value`` is one of ``allowed`` (a subset of
    :data:`IF_TOO_FEW`)."""
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, found {value!r}")


@dataclass
class SamplingConfig:
    """How tasks are mixed in a batch.

    Attributes:
        strategy: ``proportional`` (p_k ∝ n_k), ``temperature`` (p_k ∝ n_k^(1/T), T5/MPT style),
            or ``uniform`` (p_k = 1/K).
        temperature: T for the temperature strategy (1 = proportional, ∞ → uniform).
        max_examples_per_task: cap n_k when computing the mixing rates (0 = no cap).
        task_grouped: every (global) batch holds one task, drawn with the mixing rates; the CLIP
            head then encodes one task's class prompts per step instead of nearly all of them.
    """

    strategy: Literal["proportional", "temperature", "uniform"] = "proportional"
    temperature: float = 2.0
    max_examples_per_task: int = 0
    task_grouped: bool = False


def task_probabilities(sizes: Sequence[int], cfg: SamplingConfig) -> list[float]:
    """Mixing rates of the tasks."""
    if not sizes:
        raise DataError("no tasks to sample from")
    for k, n in enumerate(sizes):
        if n <= 0:
            raise DataError(f"task {k} has no examples; every task needs at least one")
    n = [min(s, cfg.max_examples_per_task) if cfg.max_examples_per_task > 0 else s for s in sizes]
    if cfg.strategy == "uniform":
        w = [1.0] * len(n)
    elif cfg.strategy == "proportional":
        w = [float(x) for x in n]
    else:
        if cfg.temperature <= 0:
            raise ValueError(f"sampling temperature must be > 0, found {cfg.temperature}")
        w = [float(x) ** (1.0 / cfg.temperature) for x in n]
    total = sum(w)
    return [x / total for x in w]


class MultiTaskDataset(Dataset):
    """Per-task datasets behind one index space of ``(task_id, index)`` pairs."""

    def __init__(self, datasets: Sequence[Dataset], seed: int = 0):
        if not datasets:
            raise DataError("MultiTaskDataset needs at least one task dataset")
        self.datasets = list(datasets)
        self.sizes = [len(d) for d in self.datasets]  # type: ignore[arg-type]
        for k, n in enumerate(self.sizes):
            if n == 0:
                raise DataError(f"task {k} has an empty dataset; every task needs at least one example")
        self.seed = seed

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, key: tuple[int, ...]) -> dict[str, Any]:
        """``key`` is ``(task_id, index)`` or, from the training sampler, ``(task_id, index, draw)``:
        then random augmentation is seeded by ``(seed, draw)``, so it does not depend on which
        worker loads the sample and resumes exactly."""
        task_id, index = key[0], key[1]
        if len(key) == 3:
            with torch.random.fork_rng(devices=[]):
                state = random.getstate()
                # the CPU generator only: torch.manual_seed also queues a CUDA seeding, which the CUDA build
                # records with a Python stack trace on every call (a quarter of a few-shot step on CPU)
                torch.default_generator.manual_seed((self.seed * 1_000_003 + key[2]) % 2**62)
                random.seed(f"{self.seed}-{key[2]}")
                try:
                    sample = self.datasets[task_id][index]
                finally:
                    random.setstate(state)
        else:
            sample = self.datasets[task_id][index]
        if not isinstance(sample, dict):
            raise DataError(f"task datasets must return dict samples; task {task_id} returned {type(sample).__name__}")
        sample = dict(sample)
        sample["task_id"] = int(task_id)
        sample["index"] = int(index)
        return sample


class MultiTaskBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Infinite stream of mixed-task batches of ``(task_id, index, draw)`` keys
    (``draw`` counts samples drawn so far; it seeds augmentation).

    Args:
        sizes: number of examples per task.
        batch_size: per-rank batch size.
        cfg: mixing strategy.
        seed: base seed.
        rank, world_size: data-parallel position; the global batch is ``batch_size * world_size``.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, cfg: SamplingConfig | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, found {batch_size}")
        self.sizes = list(sizes)
        self.cfg = cfg or SamplingConfig()
        self.probs = task_probabilities(self.sizes, self.cfg)
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self._skip = 0

    # -- resumable state --------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        return {"batches_consumed": self._skip}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next iteration after ``batches_consumed`` batches."""
        self._skip = int(state["batches_consumed"])

    def _global_batches(self) -> Iterator[list[tuple[int, int, int]]]:
        rng = random.Random(self.seed)
        cursors = [0] * len(self.sizes)
        perms: list[list[int]] = [[] for _ in self.sizes]
        passes = [0] * len(self.sizes)
        tasks = list(range(len(self.sizes)))
        global_bs = self.batch_size * self.world_size
        draw = 0
        while True:
            batch = []
            if self.cfg.task_grouped:
                drawn = [rng.choices(tasks, weights=self.probs, k=1)[0]] * global_bs
            else:
                drawn = rng.choices(tasks, weights=self.probs, k=global_bs)
            for t in drawn:
                if cursors[t] == 0:
                    perms[t] = list(range(self.sizes[t]))
                    random.Random(f"{self.seed}-{t}-{passes[t]}").shuffle(perms[t])
                    passes[t] += 1
                batch.append((t, perms[t][cursors[t]], draw))
                draw += 1
                cursors[t] = (cursors[t] + 1) % self.sizes[t]
            yield batch

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        lo = self.rank * self.batch_size
        for n, batch in enumerate(self._global_batches()):
            if n < self._skip:
                continue
            yield batch[lo : lo + self.batch_size]

    def __len__(self) -> int:  # an infinite sampler; DataLoader only needs this for len()
        return 2**62


class ShardedEvalSampler(Sampler[tuple[int, int]]):
    """Every evaluation example exactly once across ranks: rank r takes items r, r+N, ...
    (no padding, so nothing is duplicated when the size does not divide by N)."""

    def __init__(self, sizes: Sequence[int], rank: int = 0, world_size: int = 1):
        self.keys = [(t, i) for t, n in enumerate(sizes) for i in range(n)][rank::world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)
