"""Inference with a trained run: one loaded CLIP serves all of the run's tasks, and one batch
may mix tasks (classification and VQA).

    >>> p = Predictor.from_run("runs/quickstart/source_coop")
    >>> p.predict(["a.png", "b.png"], tasks=["easy_vqa_shape", "easy_vqa"], questions=[None, "what color is the shape?"])
    [{'task': 'easy_vqa_shape', 'prediction': 'circle', ...}, {'task': 'easy_vqa', 'prediction': 'blue', ...}]
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image, UnidentifiedImageError

from datasets_vl import decode_image
from mvlpt.clip.backbone import Backbone, create_backbone
from mvlpt.clip.zeroshot import CLIPZeroShot
from mvlpt.core.errors import ConfigError, DataError, TaskIdError
from mvlpt.core.runtime import move_to, resolve_device
from mvlpt.core.distributed import DistInfo

from .run_config import CLIPRunConfig
from .stages import SavedRun, load_trained, read_run, task_infos


def load_run_model(run_dir: str | Path | SavedRun, backbone: Backbone | None = None
                   ) -> tuple[CLIPRunConfig, torch.nn.Module, Backbone]:
    """A saved run's config, model and backbone, its ``config.json`` read once: a trained run's
    :class:`~mvlpt.clip.task_model.CLIPTaskModel` with its best / latest prompts (:func:`~.stages.load_trained`),
    or a zero-shot run's ``CLIPZeroShot`` (its templates)."""
    run = run_dir if isinstance(run_dir, SavedRun) else read_run(run_dir, "run", zeroshot=True)
    cfg = run.cfg
    if not cfg.resolved_tasks:
        where = run.path if isinstance(run_dir, SavedRun) else run_dir
        raise ConfigError(f"{where}: its config.json lists no tasks (resolved_tasks); was it written by `mvlpt`?")
    if cfg.stage == "zeroshot":
        bb = backbone or create_backbone(cfg.backbone)
        key = "ensemble_templates" if cfg.zeroshot_ensemble else "templates"
        model: torch.nn.Module = CLIPZeroShot(bb.model, bb.tokenizer, task_infos(cfg.resolved_tasks),
                                              [i[key] for i in cfg.resolved_tasks])
        return cfg, model, bb
    return load_trained(run, backbone)


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
        self.transform = backbone.preprocess.eval_transform()

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", backbone: Backbone | None = None) -> "Predictor":
        """Load the backbone and prompts named by ``run_dir/config.json`` (best checkpoint, else the latest;
        a zero-shot run has no prompts). The run's config is read once and passed down."""
        cfg, model, bb = load_run_model(run_dir, backbone)
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
    def predict(self, images: Sequence[Any], tasks: str | int | Sequence[str | int] | None = None,
                questions: Sequence[str | None] | None = None, batch_size: int = 64, topk: int = 1,
                skip_unreadable: bool = False) -> list[dict[str, Any]]:
        """Predict a label (classification) or an answer (VQA) per image.

        Args:
            images: paths, bytes, PIL images or already-transformed tensors ``(3, H, W)``.
            tasks: one task (name or id) for all images, or one per image (tasks may be mixed);
                ``None`` for a run with a single task.
            questions: one question per image (needed for VQA tasks, ignored otherwise).
            topk: also return the ``topk`` most probable classes / answers (``top``) when > 1.
            skip_unreadable: an image that cannot be decoded (missing, not an image, truncated, a
                decompression bomb) gives ``{"task", "error"}`` in its place instead of raising
                :class:`DataError`; the other images are still predicted.

        Returns one dict per image: ``task``, ``prediction`` (class name / answer), ``class_index``,
        ``prob`` (softmax over the task's classes / candidate answers) and, with ``topk > 1``, ``top``:
        ``[{prediction, class_index, prob}, ...]`` best first.
        """
        n = len(images)
        if tasks is None:
            if len(self.infos) != 1:
                raise TaskIdError(f"this run has {len(self.infos)} tasks ({', '.join(self.task_names)}); "
                                  "name one (--task) for all images or one per image")
            tasks = 0
        ids = [self.task_id(tasks)] * n if isinstance(tasks, (str, int)) else [self.task_id(t) for t in tasks]
        if len(ids) != n:
            raise ConfigError(f"got {n} images but {len(ids)} tasks; give one task for all or one per image")
        qs = list(questions) if questions is not None else [None] * n
        if len(qs) != n:
            raise ConfigError(f"got {n} images but {len(qs)} questions")
        for i, (t, q) in enumerate(zip(ids, qs)):
            if self.infos[t]["task_type"] == "vqa" and not q:
                raise ConfigError(f"image {i}: task {self.task_names[t]!r} is a VQA task and needs a question")
        out: list[dict[str, Any] | None] = [None] * n
        for start in range(0, n, batch_size):
            good, pix = [], []
            for i in range(start, min(start + batch_size, n)):
                try:
                    pix.append(self._pixels(images[i]))
                    good.append(i)
                except Exception as e:  # noqa: BLE001 - every decoding failure is reported the same way
                    reason = unreadable_reason(e)
                    if not skip_unreadable:
                        raise DataError(f"image {i} ({_name(images[i])}): {reason}") from None
                    out[i] = {"task": self.task_names[ids[i]], "error": reason}
            if not good:
                continue
            b = len(good)
            # labels are unknown: 0 is a valid class of every task (the task models check labels)
            batch = {"images": torch.stack(pix), "labels": torch.zeros(b, dtype=torch.long),
                     "task_ids": torch.tensor([ids[i] for i in good], dtype=torch.long),
                     "indices": torch.tensor(good), "questions": [qs[i] for i in good]}
            logits = _masked_logits(self.model, move_to(batch, self.device)).float().cpu()
            for row, i in enumerate(good):
                info = self.infos[ids[i]]
                probs = logits[row, self.model.layout.columns(ids[i])].softmax(-1)
                best = probs.topk(min(topk, len(probs)))
                top = [{"prediction": info["classnames"][int(c)], "class_index": int(c), "prob": float(p)}
                       for p, c in zip(best.values, best.indices)]
                out[i] = {"task": info["name"], **top[0]}
                if topk > 1:
                    out[i]["top"] = top
        return out  # type: ignore[return-value]

    def _pixels(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image.float()
        with warnings.catch_warnings():  # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS: refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return self.transform(decode_image(image))


def _masked_logits(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """``(B, C)`` logits of a CLIP task model or zero-shot CLIP (the columns of other tasks masked), the
    ones ``model.predict`` takes its argmax of."""
    if isinstance(model, CLIPZeroShot):
        return model._logits(batch)[0]
    return model._forward(batch)[0]


def _name(image: Any) -> str:
    return str(image) if isinstance(image, (str, Path)) else type(image).__name__


def unreadable_reason(error: BaseException) -> str:
    """Why an image could not be decoded, in a few words (for ``skipped <path>: <reason>``)."""
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"refused as a possible decompression bomb ({error})"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "a directory, not an image file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file (PIL cannot identify its format)"
    if isinstance(error, OSError) and "truncated" in str(error):
        return f"truncated or corrupt image file ({error})"
    return f"unreadable image ({type(error).__name__}: {error})"
