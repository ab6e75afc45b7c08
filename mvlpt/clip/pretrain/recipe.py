"""Contrastive image–text pretraining of a miniature CLIP (``tiny-clip``) with the one training loop.

The whole open_clip ``CLIP`` (built by the CLIP factory from the recipe's model config, then unfrozen)
is the trainable "prompt module" of a :class:`ClipPretrainModel`, each pretraining dataset (labelled
images with templated captions) is one task, and the loss is open_clip's ``ClipLoss``; texts go through
the head's one trimmed text encoder and evaluation uses the head's one zero-shot scorer
(:mod:`mvlpt.clip.zeroshot`). After training, :func:`export_clip` writes fp16 safetensors, the open_clip
model config and a metadata JSON (data, steps, commit, zero-shot accuracies) for shipping.

Command::

    python -m mvlpt.clip.pretrain --config configs/pretrain/tiny_clip.yaml [key=value ...]
    python -m mvlpt.clip.pretrain --config ... --export-only   # export the run's last checkpoint
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from mvlpt.clip.backbone import METADATA_FILE, TINY_CLIP, WEIGHTS_FILE, BackboneConfig, create_backbone, weights_dir
from mvlpt.clip.text_tower import TextTower
from mvlpt.clip.zeroshot import TEMPLATE, class_text_features, zero_shot_accuracy
from mvlpt.core.checkpoint import latest_checkpoint, load_tensors, save_tensors, write_json
from mvlpt.core.commands import train_and_export_main
from mvlpt.core.config import to_dict
from mvlpt.core.errors import CheckpointError, ConfigError, DataError
from mvlpt.core.export import export_commit_record, run_commit_record, resolve_export_dir as _resolve_export_dir
from mvlpt.core.task_model import Batch, StepOutput, TaskModel
from mvlpt.core.train_config import TrainConfig
from mvlpt.core.trainer import Trainer

from . import data as pd

ZS_TEMPLATE = TEMPLATE
#: ``export_dir: package`` exports into the shipped copy (the data folder ``mvlpt/clip/weights/tiny-clip``)
PACKAGE_DIR = weights_dir(TINY_CLIP)


@dataclass
class ClipDataConfig:
    """Pretraining data.

    Attributes:
        root: folder of the shared Parquet datasets ("" = ``$MVLPT_DATA`` or ``../shared/data``).
        datasets: pretraining datasets (their ``train`` splits), one task each.
        families: caption template family per dataset (default ``generic``).
        no_flip: datasets never flipped horizontally (digits).
        max_per_dataset: cap on training images per dataset (0 = all).
        augment: random 2 px shifts and flips.
        prefix_prob: probability of a generic caption prefix.
        eval_datasets: datasets whose ``test`` split (``eval_per_dataset`` images) is scored zero-shot during training.
        targets: transfer targets; must be disjoint from ``datasets`` (zero-shot recorded at export).
        dataset_templates: each dataset's own prompt template (recorded next to the generic one).
        cache_dir: decoded-image cache ("" = none).
    """

    root: str = ""
    datasets: list[str] = field(default_factory=lambda: ["cifar10", "caltech101", "mnist", "fashion_mnist"])
    families: dict[str, str] = field(default_factory=lambda: {"mnist": "digit", "fashion_mnist": "clothing"})
    no_flip: list[str] = field(default_factory=lambda: ["mnist"])
    max_per_dataset: int = 0
    augment: bool = True
    prefix_prob: float = 0.25
    eval_datasets: list[str] = field(default_factory=lambda: ["cifar10", "mnist", "fashion_mnist"])
    eval_per_dataset: int = 500
    targets: list[str] = field(default_factory=lambda: ["flowers5", "sign_digits"])
    dataset_templates: dict[str, str] = field(default_factory=lambda: {
        "cifar10": "a photo of a {}.", "caltech101": "a photo of a {}.", "mnist": "a photo of the digit {}.",
        "fashion_mnist": "a photo of a {}, a type of clothing.", "flowers5": "a photo of a {}, a type of flower.",
        "sign_digits": "a photo of a hand showing the number {}."})
    cache_dir: str = "runs/cache"

    def validate(self) -> None:
        if not self.datasets:
            raise ConfigError("data.datasets must name at least one pretraining dataset")
        overlap = sorted(set(self.datasets) & set(self.targets))
        if overlap:
            raise ConfigError(f"data.targets {overlap} are also in data.datasets: targets must stay unseen in pretraining")
        for k, v in self.families.items():
            if v not in pd.TEMPLATES:
                raise ConfigError(f"data.families.{k}: unknown template family {v!r}; expected one of {sorted(pd.TEMPLATES)}")
        if not 0.0 <= self.prefix_prob <= 1.0:
            raise ConfigError(f"data.prefix_prob must be in [0, 1], found {self.prefix_prob}")


@dataclass
class ClipPretrainConfig:
    """A CLIP pretraining recipe.

    Attributes:
        name: model name (the exported config is ``<name>.json``, registrable with ``open_clip.add_model_config``).
        model: open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        data: pretraining data.
        train: the loop's settings.
        run_dir: run directory (checkpoints, metrics).
        export_dir: where to export after training ("" = no export, ``package`` = the package's weights dir).
        threads: ``torch.set_num_threads`` (0 = leave as is).
    """

    model: dict[str, Any]
    name: str = TINY_CLIP
    data: ClipDataConfig = field(default_factory=ClipDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/pretrain/tiny-clip"
    export_dir: str = ""
    threads: int = 0

    def validate(self) -> None:
        for key in ("embed_dim", "vision_cfg", "text_cfg"):
            if key not in self.model:
                raise ConfigError(f"model.{key} is missing (an open_clip model config needs embed_dim, vision_cfg, text_cfg)")
        for tower, keys in (("vision_cfg", ("image_size",)), ("text_cfg", ("context_length",))):
            for k in keys:
                if k not in self.model[tower]:
                    raise ConfigError(f"model.{tower}.{k} must be given explicitly")


class ClipPretrainModel(TaskModel):
    """A whole open_clip ``CLIP`` trained with ``ClipLoss``; per-task zero-shot accuracy as the eval score."""

    def __init__(self, clip: nn.Module, tokenizer: Callable[..., Tensor], task_names: Sequence[str],
                 class_names: Sequence[Sequence[str]], template: str = ZS_TEMPLATE):
        super().__init__()
        from open_clip.loss import ClipLoss

        self.clip = clip
        self.tokenizer = tokenizer
        self.task_names = list(task_names)
        self.class_names = [list(c) for c in class_names]
        self.template = template
        self.text_tower = TextTower(clip)
        self.loss_fn = ClipLoss()

    def logit_scale(self) -> Tensor:
        """``exp(logit_scale)`` clamped at 100 as in CLIP."""
        return self.clip.logit_scale.clamp(max=math.log(100.0)).exp()

    def step(self, batch: Batch) -> StepOutput:
        img = self.clip.encode_image(batch["images"], normalize=True)
        txt = torch.nn.functional.normalize(self.text_tower.encode_ids(batch["texts"]), dim=-1)
        scale = self.logit_scale()
        loss = self.loss_fn(img, txt, scale)
        with torch.no_grad():
            acc = float(((img @ txt.T).argmax(-1) == torch.arange(len(img), device=img.device)).float().mean())
        return StepOutput(loss=loss, metrics={"logit_scale": float(scale.detach()), "i2t_acc": acc})

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[dict[str, Any]]:
        img = self.clip.encode_image(batch["images"], normalize=True).float()
        tids = batch["task_ids"].tolist()
        preds = [0] * len(tids)
        for t in sorted(set(tids)):
            cls = class_text_features(self.clip, self.tokenizer, self.class_names[t], [self.template], self.text_tower)
            rows = [i for i, x in enumerate(tids) if x == t]
            for i, p in zip(rows, (img[rows] @ cls.T).argmax(-1).tolist()):
                preds[i] = int(p)
        return [{"task_id": t, "index": int(i), "pred": p, "label": int(y)}
                for t, i, p, y in zip(tids, batch["index"].tolist(), preds, batch["labels"].tolist())]

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for t, name in enumerate(self.task_names):
            rs = [r for r in records if r["task_id"] == t]
            if rs:
                out[f"{name}/zero_shot_acc"] = sum(r["pred"] == r["label"] for r in rs) / len(rs)
        accs = [v for v in out.values()]
        out["score"] = sum(accs) / len(accs) if accs else 0.0
        return out

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"clip": self.clip}


# ---------------------------------------------------------------------------------------------

def data_root(cfg: ClipPretrainConfig) -> Path:
    return Path(cfg.data.root) if cfg.data.root else pd.default_data_root()


def load_split(cfg: ClipPretrainConfig, name: str, split: str, max_n: int = 0, seed: int = 0) -> tuple[Tensor, Tensor, list[str]]:
    """One split of a pretraining dataset: a shared Parquet set, or ``easy_vqa`` (the easy-vqa
    package's images, captioned by colour and shape)."""
    size, cache = int(cfg.model["vision_cfg"]["image_size"]), cfg.data.cache_dir or None
    if name == "easy_vqa":
        return pd.easy_vqa_captioned(split, size, cache)
    return pd.load_image_split(data_root(cfg), name, split, size, cache, max_n, seed)


def build_datasets(cfg: ClipPretrainConfig) -> tuple[list[pd.CaptionDataset], list[pd.CaptionDataset], list[list[str]]]:
    """Training datasets (one per pretraining dataset), evaluation datasets (one per eval dataset,
    test split subsample) and the class names of each eval dataset."""
    d = cfg.data
    train = []
    for name in d.datasets:
        imgs, labels, names = load_split(cfg, name, "train", d.max_per_dataset, cfg.train.seed)
        train.append(pd.CaptionDataset(imgs, labels, names, d.families.get(name, "generic"), augment=d.augment,
                                       flip=name not in d.no_flip, prefix_prob=d.prefix_prob))
    evals, eval_names = [], []
    for name in d.eval_datasets:
        imgs, labels, names = load_split(cfg, name, "test", d.eval_per_dataset, 0)
        evals.append(pd.CaptionDataset(imgs, labels, names, captions=False, augment=False))
        eval_names.append(names)
    return train, evals, eval_names


def fixed_sample_accuracy(model: nn.Module, tokenizer: Callable[..., Tensor], image_size: int) -> dict[str, float]:
    """Zero-shot accuracy on the fixed samples that need no shared data (sklearn digits, easy-vqa shapes)."""
    out = {}
    for key, fn in (("sklearn_digits_300", pd.sklearn_digits_sample), ("easy_vqa_shapes_300", pd.easy_vqa_shape_sample)):
        imgs, labels, names = fn(300, image_size)
        out[key] = zero_shot_accuracy(model, tokenizer, pd.normalize(imgs), labels, names, [ZS_TEMPLATE])
    return out


@torch.no_grad()
def image_features(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Unit-norm image embeddings of normalised float images."""
    return torch.cat([model.encode_image(images[i:i + batch_size], normalize=True).float()
                      for i in range(0, len(images), batch_size)])


def prototype_accuracy(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, test_labels: Tensor,
                       shots: int, seeds: Sequence[int] = (1, 2, 3)) -> float:
    """Nearest-class-mean accuracy from ``shots`` random training images per class (mean over ``seeds``)."""
    classes = sorted(set(train_labels.tolist()))
    accs = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        protos = []
        for c in classes:
            idx = (train_labels == c).nonzero().flatten()
            protos.append(train_feats[idx[torch.randperm(len(idx), generator=g)[:shots]]].mean(0))
        p = torch.nn.functional.normalize(torch.stack(protos), dim=-1)
        pred = torch.tensor(classes)[(test_feats @ p.T).argmax(-1)]
        accs.append(float((pred == test_labels).float().mean()))
    return sum(accs) / len(accs)


def zero_shot_report(model: nn.Module, tokenizer: Callable[..., Tensor], cfg: ClipPretrainConfig) -> dict[str, Any]:
    """Zero-shot test accuracy (generic and dataset template) on sources, targets and the fixed samples."""
    size, d = int(cfg.model["vision_cfg"]["image_size"]), cfg.data
    report: dict[str, Any] = {"template": ZS_TEMPLATE, "test_split": {}, "fixed_samples": {}}
    for name in list(dict.fromkeys(d.datasets + d.eval_datasets + d.targets)):
        try:
            imgs, labels, names = load_split(cfg, name, "test")
        except DataError as e:  # a missing dataset is reported, not fatal
            report["test_split"][name] = {"error": str(e)}
            continue
        x = pd.normalize(imgs)
        own = d.dataset_templates.get(name, ZS_TEMPLATE)
        report["test_split"][name] = {
            "role": "target" if name in d.targets else "pretraining",
            "n": len(labels),
            "chance": 1.0 / len(names),
            "generic": round(zero_shot_accuracy(model, tokenizer, x, labels, names, [ZS_TEMPLATE]), 4),
            "dataset_template": own,
            "dataset": round(zero_shot_accuracy(model, tokenizer, x, labels, names, [own]), 4),
        }
        if name in d.targets:  # image-feature quality: nearest class mean on K training images per class
            try:
                tr_imgs, tr_labels, _ = load_split(cfg, name, "train")
            except DataError:  # no train split: zero-shot only
                continue
            model.eval()
            tr_f, te_f = image_features(model, pd.normalize(tr_imgs)), image_features(model, x)
            report["test_split"][name]["prototype"] = {
                f"K={k}": round(prototype_accuracy(tr_f, tr_labels, te_f, labels, k), 4) for k in (1, 4, 16)}
    report["fixed_samples"] = fixed_sample_accuracy(model, tokenizer, size)
    return report


def export_clip(clip: nn.Module, cfg: ClipPretrainConfig, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<name>.json``, fp16 ``open_clip_model.safetensors`` and ``metadata.json`` to ``out_dir``;
    the zero-shot accuracies are measured on the fp16 weights as shipped (reloaded in fp32)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{cfg.name}.json").write_text(json.dumps(cfg.model, indent=2) + "\n")
    save_tensors(out / WEIGHTS_FILE, {k: v.detach().half() for k, v in clip.state_dict().items()})
    shipped = BackboneConfig(name=cfg.name, pretrained=None, model_config=str(out / f"{cfg.name}.json"),
                             checkpoint=str(out / WEIGHTS_FILE))
    model, tokenizer, _, _ = create_backbone(shipped)  # the exported files, loaded by the CLIP factory
    meta = {
        "name": cfg.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "file_bytes": (out / WEIGHTS_FILE).stat().st_size,
        "pretraining_data": {n: "train split of ../shared/data/" + n for n in cfg.data.datasets},
        "targets_unseen": cfg.data.targets,
        **export_commit_record(cfg.run_dir),
        **(extra or {}),
        "zero_shot": zero_shot_report(model, tokenizer, cfg),
        "config": to_dict(cfg),
    }
    write_json(out / METADATA_FILE, meta)
    return out


def resolve_export_dir(value: str) -> Path | None:
    """``export_dir``: "" = no export, ``package`` = :data:`PACKAGE_DIR`, else the path (:mod:`mvlpt.core.export`)."""
    return _resolve_export_dir(value, PACKAGE_DIR)


def trainable_clip(model_cfg: dict[str, Any]) -> tuple[nn.Module, Callable[..., Tensor]]:
    """A trainable CLIP (train mode, random weights from the global RNG) of an open_clip model config and its
    tokenizer: the CLIP factory's model, unfrozen."""
    clip, tokenizer, _, _ = create_backbone(model_cfg, seed=None)
    return clip.requires_grad_(True).train(), tokenizer


def build_model(cfg: ClipPretrainConfig, class_names: Sequence[Sequence[str]], task_names: Sequence[str]) -> ClipPretrainModel:
    torch.manual_seed(cfg.train.seed)
    clip, tokenizer = trainable_clip(cfg.model)
    return ClipPretrainModel(clip, tokenizer, task_names, class_names)


def run(cfg: ClipPretrainConfig, export: bool = True) -> dict[str, Any]:
    """Pretrain (resuming from the run's latest checkpoint) and export when ``cfg.export_dir`` is set."""
    run_commit_record(cfg.run_dir)  # the commit this run started at (kept on resume), for the export
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    train, evals, eval_names = build_datasets(cfg)
    model = build_model(cfg, eval_names, cfg.data.eval_datasets)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny-clip pretraining: {n_params / 1e6:.2f}M parameters, datasets "
          f"{dict(zip(cfg.data.datasets, map(len, train)))}", flush=True)
    trainer = Trainer(model, train, pd.make_collate(model.tokenizer), cfg.train, cfg.run_dir,
                      eval_datasets=evals or None, run_config=to_dict(cfg))
    t0 = time.time()
    result = trainer.fit()
    result["train_seconds"] = round(time.time() - t0, 1)
    out = resolve_export_dir(cfg.export_dir)
    if export and out is not None:
        export_clip(model.clip, cfg, out, {"steps": result["step"], "train_seconds": result["train_seconds"],
                                           "final_eval": result["final"]})
        result["export_dir"] = str(out)
    return result


def export_from_run(cfg: ClipPretrainConfig) -> Path:
    """Export the latest checkpoint of ``cfg.run_dir`` (``--export-only``)."""
    ckpt = latest_checkpoint(Path(cfg.run_dir) / "checkpoints")
    if ckpt is None:
        raise CheckpointError(f"no checkpoint under {cfg.run_dir}/checkpoints to export")
    out = resolve_export_dir(cfg.export_dir)
    if out is None:
        raise ConfigError("--export-only needs export_dir (a path, or 'package')")
    clip, _ = trainable_clip(cfg.model)
    state = load_tensors(ckpt / "prompts.safetensors")
    clip.load_state_dict({k[len("clip."):]: v for k, v in state.items() if k.startswith("clip.")})
    extra: dict[str, Any] = {"steps": json.loads((ckpt / "trainer_state.json").read_text())["step"]}
    log = Path(cfg.run_dir) / "metrics.jsonl"
    if log.is_file():  # wall-clock training time, as logged by the loop
        train = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("split") == "train" and "elapsed_s" in r]
        if train:
            extra["train_seconds"] = train[-1]["elapsed_s"]
    return export_clip(clip, cfg, out, extra)


def main(argv: Sequence[str] | None = None) -> int:
    """``pretrain`` command of tiny-clip."""
    return train_and_export_main(argv, "mvlpt pretrain", __doc__.split("\n\n")[0], ClipPretrainConfig, run, export_from_run,
                                 "configs/pretrain/tiny_clip.yaml")


def read_metadata(directory: str | Path | None = None) -> dict[str, Any]:
    """The ``metadata.json`` of an exported model directory (default: the shipped tiny-clip)."""
    path = Path(directory) if directory is not None else PACKAGE_DIR
    return json.loads((path / METADATA_FILE).read_text())
