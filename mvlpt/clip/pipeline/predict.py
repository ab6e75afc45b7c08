"""Inference with a trained run: one loaded CLIP serves all of the run's tasks, and one batch
may mix tasks (classification and VQA).

    >>> p = Predictor.from_run("runs/quickstart/source_coop")
    >>> p.predict(["a.png", "b.png"], tasks=["easy_vqa_shape", "easy_vqa"], questions=[None, "what color is the shape?"])
    [{'task': 'easy_vqa_shape', 'prediction': 'circle', ...}, {'task': 'easy_vqa', 'prediction': 'blue', ...}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from datasets_vl import build_transforms, decode_image
from mvlpt.clip.zeroshot import CLIPZeroShot
from mvlpt.core.errors import ConfigError, TaskIdError
from mvlpt.core.trainer import move_to, resolve_device
from mvlpt.core.distributed import DistInfo

from .backbones import Backbone, load_backbone
from .compat import read_run_config
from .stages import load_trained, task_infos


class Predictor:
    """A trained (or zero-shot) run's model, ready to classify images / answer questions.

    Args:
        model: a :class:`~mvlpt.clip.task_model.CLIPTaskModel` or ``CLIPZeroShot``.
        infos: the run's task descriptions (``name``, ``task_type``, ``classnames``, ...).
        backbone: the loaded backbone (its preprocessing is applied to images).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    def __init__(self, model: torch.nn.Module, infos: list[dict[str, Any]], backbone: Backbone, device: str = "auto"):
        self.device = resolve_device(device, DistInfo())
        self.model = model.to(self.device).eval()
        self.infos = infos
        self.backbone = backbone
        pre = backbone.preprocess
        _, self.transform = build_transforms(pre.size, pre.mean, pre.std, pre.interpolation, train_augment=False,
                                             resize_mode=pre.resize_mode)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", backbone: Backbone | None = None) -> "Predictor":
        """Load the backbone and prompts named by ``run_dir/config.json`` (best checkpoint, else the latest)."""
        cfg, _ = read_run_config(run_dir, "run")
        if cfg is None:
            raise ConfigError(f"{run_dir}: no config.json; give a run directory written by `mvlpt`")
        if not cfg.resolved_tasks:
            raise ConfigError(f"{run_dir}: its config.json lists no tasks (resolved_tasks); was it written by `mvlpt`?")
        if cfg.stage == "zeroshot":
            bb = backbone or load_backbone(cfg.backbone)
            key = "ensemble_templates" if cfg.zeroshot_ensemble else "templates"
            model = CLIPZeroShot(bb.model, bb.tokenizer, task_infos(cfg.resolved_tasks),
                                 [i[key] for i in cfg.resolved_tasks])
        else:
            cfg, model, bb = load_trained(run_dir, backbone)
        return cls(model, cfg.resolved_tasks, bb, device)

    @property
    def task_names(self) -> list[str]:
        return [i["name"] for i in self.infos]

    def task_id(self, task: str | int) -> int:
        """A task name or id → its id in this run."""
        if isinstance(task, int) and not isinstance(task, bool):
            if not 0 <= task < len(self.infos):
                raise TaskIdError(f"task id {task} is out of range: this run has tasks 0..{len(self.infos) - 1} "
                                  f"({', '.join(self.task_names)})")
            return task
        if task in self.task_names:
            return self.task_names.index(task)
        raise TaskIdError(f"unknown task {task!r}; this run's tasks are {self.task_names}")

    @torch.no_grad()
    def predict(self, images: Sequence[Any], tasks: str | int | Sequence[str | int],
                questions: Sequence[str | None] | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
        """Predict a label (classification) or an answer (VQA) per image.

        Args:
            images: paths, bytes, PIL images or already-transformed tensors ``(3, H, W)``.
            tasks: one task (name or id) for all images, or one per image (tasks may be mixed).
            questions: one question per image (needed for VQA tasks, ignored otherwise).

        Returns one dict per image: ``task``, ``prediction`` (class name / answer), ``class_index``.
        """
        n = len(images)
        ids = [self.task_id(tasks)] * n if isinstance(tasks, (str, int)) else [self.task_id(t) for t in tasks]
        if len(ids) != n:
            raise ConfigError(f"got {n} images but {len(ids)} tasks; give one task for all or one per image")
        qs = list(questions) if questions is not None else [None] * n
        if len(qs) != n:
            raise ConfigError(f"got {n} images but {len(qs)} questions")
        for i, (t, q) in enumerate(zip(ids, qs)):
            if self.infos[t]["task_type"] == "vqa" and not q:
                raise ConfigError(f"image {i}: task {self.task_names[t]!r} is a VQA task and needs a question")
        out: list[dict[str, Any]] = []
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            pix = torch.stack([self._pixels(im) for im in images[sl]])
            b = len(pix)
            # labels are unknown: 0 is a valid class of every task (the task models check labels)
            batch = {"images": pix, "labels": torch.zeros(b, dtype=torch.long),
                     "task_ids": torch.tensor(ids[sl], dtype=torch.long),
                     "indices": torch.arange(start, start + b), "questions": qs[sl]}
            records = self.model.predict(move_to(batch, self.device))
            for r in sorted(records, key=lambda r: r["index"]):
                info = self.infos[int(r["task_id"])]
                pred = int(r["pred"])
                out.append({"task": info["name"], "prediction": info["classnames"][pred], "class_index": pred})
        return out

    def _pixels(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image.float()
        return self.transform(decode_image(image))
