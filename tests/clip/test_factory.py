"""The one CLIP factory (``create_backbone``), the one preprocessing record and the one zero-shot scorer."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from datasets_vl import Preprocess
from mvlpt.clip import Backbone, BackboneConfig, TaskInfo, create_backbone, tiny_clip_config
from mvlpt.clip.backbone import TINY_CLIP, WEIGHTS_FILE, weights_dir
from mvlpt.clip.pretrain import ClipPretrainModel
from mvlpt.clip.pretrain import data as pd
from mvlpt.clip.zeroshot import CLIPZeroShot, zero_shot_accuracy
from mvlpt.core.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
ENSEMBLE = ["a photo of a {}.", "a blurry photo of the number {}.", "a drawing of a {}."]
#: correct answers out of 300 of the shipped tiny-clip v4: (sample, templates) -> count. With v3 the counts
#: (67, 65, 118, 116) were measured before the scorers were merged and were the same from all three old call
#: sites (``weights.zero_shot_accuracy``, ``CLIPZeroShot``, the pretraining's ``ClipPretrainModel.predict``);
#: the one scorer reproduced them until v4 shipped. The "one" counts are also the export's ``fixed_samples``.
BEFORE = {("digits", "one"): 97, ("digits", "ensemble"): 96, ("shapes", "one"): 176, ("shapes", "ensemble"): 177}
SAMPLES = {"digits": pd.sklearn_digits_sample, "shapes": pd.easy_vqa_shape_sample}


def _frozen(model: torch.nn.Module) -> bool:
    return not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.fixture(scope="module")
def shipped() -> Backbone:
    return create_backbone(TINY_CLIP)


def test_a_model_config_dict(tmp_path):
    bb = create_backbone(tiny_clip_config(), seed=3)
    model, tokenizer, preprocess, config = bb
    assert isinstance(bb, Backbone) and bb.model is model and _frozen(model)
    assert tokenizer(["a photo of a cat."]).shape == (1, 32)
    assert preprocess == Preprocess(size=32)
    assert isinstance(config, BackboneConfig) and config.model_config == tiny_clip_config() and config.pretrained is None
    again = create_backbone(tiny_clip_config(), seed=3).model
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


def test_tiny_clip_is_a_name_it_resolves(shipped):
    model, tokenizer, preprocess, config = shipped
    assert _frozen(model) and {p.dtype for p in model.parameters()} == {torch.float32}
    assert tokenizer(["a photo of a cat."]).shape == (1, model.context_length) == (1, 32)
    assert preprocess == Preprocess(size=32)  # CLIP's mean / std, bicubic, shortest side
    assert config.name == TINY_CLIP and model.mvlpt_name == TINY_CLIP
    same = create_backbone(BackboneConfig(name=TINY_CLIP)).model  # as a run config names it
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), same.parameters()))


def test_a_local_directory(tmp_path, shipped):
    src = create_backbone(tiny_clip_config(), seed=5).model
    export = tmp_path / "my-export"
    export.mkdir()
    (export / "tiny.json").write_text(json.dumps(tiny_clip_config()))
    (export / "metadata.json").write_text("{}")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(export / WEIGHTS_FILE))
    model, tokenizer, preprocess, config = create_backbone(export)
    assert _frozen(model) and tokenizer(["a cat"]).shape == (1, 32) and preprocess.size == 32
    assert config.model_config == str(export / "tiny.json") and config.checkpoint == str(export / WEIGHTS_FILE)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), src.state_dict().values()))
    # the shipped folder, named by its path, is the tiny-clip
    by_path = create_backbone(str(weights_dir(TINY_CLIP))).model
    assert all(torch.equal(p, q) for p, q in zip(by_path.parameters(), shipped.model.parameters()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no exported CLIP"):
        create_backbone(tmp_path / "empty")


@pytest.mark.parametrize("sample, templates", list(BEFORE))
def test_one_zero_shot_scorer_gives_the_old_accuracies(shipped, sample, templates):
    model, tokenizer, preprocess, _ = shipped
    imgs, labels, names = SAMPLES[sample](300, preprocess.size)
    x = preprocess.normalize(imgs)
    temps = ENSEMBLE if templates == "ensemble" else ENSEMBLE[:1]
    acc = zero_shot_accuracy(model, tokenizer, x, labels, names, temps)
    assert acc == float(torch.tensor(BEFORE[sample, templates] / 300, dtype=torch.float32))

    batch = {"images": x, "labels": labels, "task_ids": torch.zeros(len(labels), dtype=torch.long),
             "index": torch.arange(len(labels)), "indices": torch.arange(len(labels))}
    zs = CLIPZeroShot(model, tokenizer, [TaskInfo(sample, "classification", names, temps[0])], [temps])
    assert zs.compute_metrics(zs.predict(batch))[f"{sample}/accuracy"] == pytest.approx(100 * BEFORE[sample, templates] / 300)
    if templates == "one":  # the pretraining's evaluation scores with the generic template
        pm = ClipPretrainModel(model, tokenizer, [sample], [names])
        assert pm.compute_metrics(pm.predict(batch))[f"{sample}/zero_shot_acc"] == pytest.approx(BEFORE[sample, templates] / 300)


def _imports(path: Path) -> set[str]:
    """Modules imported by a file (relative imports resolved against its package)."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def test_model_layers_import_neither_the_pretraining_wing_nor_the_weights_folder():
    clip = ROOT / "mvlpt" / "clip"
    files = [f for f in clip.rglob("*.py") if "pretrain" not in f.relative_to(clip).parts and f.name != "cli.py"]
    bad = sorted((str(f.relative_to(ROOT)), m) for f in files for m in _imports(f)
                 if m.startswith(("mvlpt.clip.pretrain", "mvlpt.clip.weights")))
    assert files and not bad, bad
