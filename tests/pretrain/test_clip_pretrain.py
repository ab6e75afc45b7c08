"""tiny-clip pretraining: the command runs on tiny in-test data, lowers the contrastive loss and exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvlpt.clip import pretrain
from mvlpt.clip.backbone import create_backbone
from mvlpt.clip.pretrain import data as pd
from mvlpt.clip.text_tower import TextTower
from mvlpt.clip.zeroshot import zero_shot_accuracy
from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_clip.yaml"
TINY_MODEL = ("model={embed_dim: 32, vision_cfg: {image_size: 16, patch_size: 8, width: 32, layers: 1, head_width: 16},"
              " text_cfg: {context_length: 32, vocab_size: 49408, width: 32, heads: 2, layers: 1}}")


def _write_split(path: Path, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
    from datasets import ClassLabel, Dataset, Features, Image as HFImage
    from PIL import Image

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    feats = Features({"image": HFImage(), "label": ClassLabel(names=names)})
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict({"image": pil, "label": labels.tolist()}, features=feats).to_parquet(str(path))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Two tiny Parquet datasets in the shared layout: ``digits`` (pretraining) and ``shapes`` (target)."""
    root = tmp_path_factory.mktemp("data")
    imgs, labels, names = pd.sklearn_digits_sample(300, 16)
    _write_split(root / "digits" / "train.parquet", imgs[:240], labels[:240], names)
    _write_split(root / "digits" / "test.parquet", imgs[240:], labels[240:], names)
    imgs, labels, names = pd.easy_vqa_shape_sample(30, 16)
    _write_split(root / "shapes" / "test.parquet", imgs, labels, names)
    return root


def test_trimmed_text_encoding_matches_open_clip():
    torch.manual_seed(0)
    clip, tokenizer = pretrain.trainable_clip(load_config(pretrain.ClipPretrainConfig, CONFIG, [TINY_MODEL]).model)
    clip.eval()
    tokens = tokenizer(["a photo of a seven.", "here is a handwritten digit seven, drawn in black ink."])
    trimmed = torch.nn.functional.normalize(TextTower(clip).encode_ids(tokens), dim=-1)  # what the pretraining step encodes
    torch.testing.assert_close(trimmed, clip.encode_text(tokens, normalize=True))


def test_config_refuses_targets_in_pretraining_and_unknown_keys():
    with pytest.raises(ConfigError, match="unseen"):
        load_config(pretrain.ClipPretrainConfig, CONFIG, ["data.targets=[mnist]"])
    with pytest.raises(ConfigError, match="prefix_prob"):
        load_config(pretrain.ClipPretrainConfig, CONFIG, ["data.prefix_pro=0.1"])


def test_pretrain_command_reports_config_errors_in_one_line(capsys):
    # also under `python -m mvlpt.clip.pretrain`, which does not go through the mvlpt CLI
    assert pretrain.main(["--config", str(CONFIG), "train.max_steps=20", "train.schedule.warmup_steps=40"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exceeds train.max_steps (20)" in err[0] and "warmup_steps" in err[0], err
    assert "Traceback" not in "".join(err)


def test_caption_dataset_draws_templates_and_prefixes():
    imgs, labels, names = pd.sklearn_digits_sample(4, 16)
    ds = pd.CaptionDataset(imgs, labels, names, "digit", prefix_prob=1.0)
    caps = {ds[0]["caption"] for _ in range(40)}
    assert len(caps) > 5 and all(names[int(labels[0])] in c for c in caps)
    assert all(any(c.startswith(p) for p in pd.PREFIXES) for c in caps)
    assert ds[0]["image"].shape == (3, 16, 16) and ds[0]["image"].dtype == torch.uint8


def test_pretrain_command_lowers_loss_and_exports(data_root: Path, tmp_path: Path, one_thread):
    run_dir, export = tmp_path / "run", tmp_path / "export"
    rc = pretrain.main([
        "--config", str(CONFIG), TINY_MODEL, f"data.root={data_root}", "data.datasets=[digits]",
        "data.eval_datasets=[digits]", "data.targets=[shapes]", "data.eval_per_dataset=60", "data.families={digits: digit}",
        "data.cache_dir=", f"run_dir={run_dir}", f"export_dir={export}", "threads=1",
        "train.max_steps=60", "train.batch_size=32", "train.log_every=10", "train.eval_every=60", "train.save_every=0",
        "train.schedule.warmup_steps=5", "train.optim.lr=3e-3",
    ])
    assert rc == 0
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if r["split"] == "train"]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3, losses
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["steps"] == 60 and meta["zero_shot"]["test_split"]["shapes"]["role"] == "target"
    started = json.loads((run_dir / "started.json").read_text())  # the commit the run started at
    assert {k: meta[k] for k in started} == started
    assert set(meta["zero_shot"]["fixed_samples"]) == {"sklearn_digits_300", "easy_vqa_shapes_300"}
    model, tokenizer, preprocess, _ = create_backbone(export)
    assert not model.training and tokenizer.context_length == 32
    # the exported fp16 weights reproduce the recorded accuracy
    imgs, labels, names = pd.sklearn_digits_sample(300, 16)
    acc = zero_shot_accuracy(model, tokenizer, pd.normalize(imgs), labels, names, [pretrain.ZS_TEMPLATE])
    assert acc == pytest.approx(meta["zero_shot"]["fixed_samples"]["sklearn_digits_300"], abs=1e-6)


def test_easy_vqa_captions_agree_with_the_answers():
    """Each captioned easy-vqa image's colour / shape is what its own questions answer."""
    import easy_vqa

    attrs = pd.easy_vqa_attributes("test")
    qs, answers, ids = easy_vqa.get_test_questions()
    checked = 0
    for q, a, i in zip(qs, answers, ids):
        d = attrs[int(i)]
        if q.startswith("what color") or q.startswith("what is the color"):
            assert d["color"] == a, (q, a, d)
            checked += 1
        if q.startswith("what shape") or (q.startswith("what is the ") and q.split()[3] in pd._VQA_COLORS):
            assert d["shape"] == a, (q, a, d)
            checked += 1
    assert checked > 500
    imgs, labels, names = pd.easy_vqa_captioned("test", 16)
    assert len(imgs) == len(labels) > 900 and imgs.shape[1:] == (3, 16, 16)
    assert "blue circle" in names and all(n.split()[-1] in ("circle", "rectangle", "triangle", "shape") for n in names)
    ds = pd.CaptionDataset(imgs, labels, names, "shape")
    assert names[int(labels[0])] in ds[0]["caption"]
