"""Evaluation without training: a task model on one dataset per task, with the loop's settings.

:meth:`mvlpt.core.trainer.Trainer.evaluate` is this function with the trainer's model, device and
process group; a head that only evaluates (zero-shot CLIP, a trained run on other tasks, ``text-mpt
eval``) calls it directly: no training data, no optimizer, no run directory binding.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .distributed import DistInfo, broadcast_object, gather_objects, init_distributed
from .runtime import autocast, move_to, resolve_device, resolve_precision
from .sampling import MultiTaskDataset, ShardedEvalSampler
from .task_model import TaskModel
from .train_config import TrainConfig


def eval_context(cfg: TrainConfig) -> tuple[DistInfo, torch.device]:
    """The process group (joined under torchrun) and device of ``cfg.device``, as the training loop sets them up."""
    info = init_distributed(cfg.device if cfg.device != "auto" else None)
    return info, resolve_device(cfg.device, info)


@torch.no_grad()
def evaluate(model: TaskModel, datasets: Sequence[Dataset], collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
             cfg: TrainConfig, info: DistInfo | None = None, device: torch.device | None = None,
             precision: str | None = None) -> dict[str, float]:
    """Metrics of ``model`` on ``datasets`` (one per task id): each rank predicts its shard, the records are
    gathered (every example once), ``model.compute_metrics`` runs on rank 0 and its result is broadcast.

    ``cfg`` gives the batch size (``eval_batch_size``, else ``batch_size``), workers, progress bar, precision
    and the seed of the multi-task dataset. ``info`` / ``device``: default from ``cfg.device``
    (:func:`eval_context`); ``precision``: the resolved one (default from ``cfg.precision`` and the device).
    The model is moved to the device and put back in its training mode afterwards. No dataset → ``{}``."""
    datasets = list(datasets)
    if not datasets:
        return {}
    if info is None or device is None:
        ctx_info, ctx_device = eval_context(cfg)
        info = info if info is not None else ctx_info
        device = device if device is not None else ctx_device
    precision = resolve_precision(cfg.precision, device) if precision is None else precision
    model = model.to(device)
    was_training = model.training
    model.eval()
    ds = MultiTaskDataset(datasets, seed=cfg.seed)
    sampler = ShardedEvalSampler(ds.sizes, info.rank, info.world_size)
    loader = DataLoader(ds, sampler=sampler, batch_size=cfg.eval_batch_size or cfg.batch_size,
                        collate_fn=collate_fn, num_workers=cfg.num_workers)
    records: list[dict[str, Any]] = []
    bar = tqdm(loader, desc="eval", leave=False, disable=not (cfg.progress and info.is_main))
    for batch in bar:
        with autocast(precision, device):
            records.extend(model.predict(move_to(batch, device)))
    all_records = [r for part in gather_objects(records, info) for r in part]
    metrics = model.compute_metrics(all_records) if info.is_main else {}
    metrics = broadcast_object(metrics, info)
    model.train(was_training)
    return metrics


__all__ = ["eval_context", "evaluate"]
