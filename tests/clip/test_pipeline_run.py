"""End to end on a tiny random CLIP: teachers → source → few-shot sweep (through the CLI),
inference on mixed tasks, and the errors for a source run of another backbone / prompt shape."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from clip_helpers import tiny_run, write_tiny_backbone

from datasets_vl import load_task
from mvlpt.clip import cli
from mvlpt.clip.pipeline import Predictor, config_for_stage, load_run_config, run_stage
from mvlpt.core.checkpoint import load_tensors
from mvlpt.core.errors import CheckpointError, ShapeMismatchError
from mvlpt.core.logging_utils import read_metrics


def _train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["task_loss"] for r in rows if r["split"] == "train"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    cfg = tiny_run(
        root,
        prompt={"method": "coop", "text": {"length": 4}, "visual": {"length": 2}, "vqa_max_answers": 6},
        train={"batch_size": 16, "eval_batch_size": 64, "max_steps": 10, "log_every": 1, "clip_grad_norm": 0.0,
               "optim": {"name": "adamw", "lr": 0.05, "weight_decay": 0.0}, "schedule": {"name": "constant"},
               "sampling": {"strategy": "uniform"}},
        output_dir=str(root / "runs"),
        sources=[{"dataset": "easy_vqa", "max_train": 64, "max_eval": 24},
                 {"dataset": "easy_vqa_shape", "max_train": 64, "max_eval": 24}],
        target={"dataset": "digits", "max_eval": 40, "hflip": False},
        stages={"teachers": {"train": {"max_steps": 20}}, "source": {"train": {"max_steps": 20}}},
        sweep={"shots": [1, 2], "seeds": [1],
               "methods": [{"name": "ZS-CLIP", "stage": "zeroshot"}, {"name": "CoOp", "stage": "single"},
                           {"name": "MCoOp", "stage": "target"}]},
    )
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    threads = torch.get_num_threads()
    assert cli.main(["experiment", "--config", str(path)]) == 0
    yield path, Path(cfg["output_dir"])
    torch.set_num_threads(threads)


def test_stages_lower_the_loss(experiment):
    _, runs = experiment
    for name, key in (("teachers_coop", "task_loss"), ("source_coop", "loss")):
        # the source stage optimises task loss + distillation (on a random backbone the two pull apart):
        # its objective, the total loss, must fall
        losses = [r[key] for r in read_metrics(runs / name) if r["split"] == "train"]
        assert len(losses) == 20
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, (name, losses)
    rows = [json.loads(l) for l in (runs / "source_coop" / "metrics.jsonl").read_text().splitlines()]
    assert all("kl_loss" in r and "mse_loss" in r for r in rows if r["split"] == "train")  # distilled from the teachers
    for method in ("CoOp", "MCoOp"):
        losses = _train_losses(runs / "fewshot_digits" / method / "k2_s1")
        assert sum(losses[-3:]) < sum(losses[:3]), (method, losses)
    saved = json.loads((runs / "source_coop" / "config.json").read_text())
    assert [t["name"] for t in saved["resolved_tasks"]] == ["easy_vqa", "easy_vqa_shape"]
    assert saved["teacher_path"].endswith("teachers_coop")


def test_fewshot_writes_table_csv_and_plot(experiment):
    _, runs = experiment
    out = runs / "fewshot_digits"
    table = (out / "results.md").read_text()
    for method in ("ZS-CLIP", "CoOp", "MCoOp"):
        assert f"| {method} |" in table
    assert "K=1" in table and "K=2" in table
    lines = (out / "runs.csv").read_text().splitlines()
    assert len(lines) == 1 + 1 + 2 * 2
    assert (out / "results.csv").is_file() and (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    for run in ("CoOp/k1_s1", "MCoOp/k2_s1"):
        assert (out / run / "results.md").is_file() and (out / run / "checkpoints" / "best").is_dir()


def test_target_starts_from_the_source(experiment):
    """MCoOp starts from the source (P* + mean factors) and adapts P* and the factors (MPT's default)."""
    _, runs = experiment
    src = load_tensors(runs / "source_coop" / "checkpoints" / "best" / "prompts.safetensors")
    tgt = load_tensors(runs / "fewshot_digits" / "MCoOp" / "k1_s1" / "checkpoints" / "best" / "prompts.safetensors")
    assert not torch.equal(src["text_prompt.shared"], tgt["text_prompt.shared"])
    assert not torch.equal(src["text_prompt.task_u"].mean(0), tgt["text_prompt.task_u"][0])


def test_predict_mixed_tasks_matches_single_task_batches(experiment, capsys):
    _, runs = experiment
    p = Predictor.from_run(runs / "source_coop", device="cpu")
    assert p.task_names == ["easy_vqa", "easy_vqa_shape"]
    vqa = load_task("easy_vqa").splits["test"]
    shape = load_task("easy_vqa_shape").splits["test"]
    imgs_v = [vqa.image_refs[i] for i in range(4)]
    qs = [vqa.questions[i] for i in range(4)]
    imgs_s = [shape.image_refs[i] for i in range(4)]
    sep_v = p.predict(imgs_v, "easy_vqa", qs)
    sep_s = p.predict(imgs_s, 1)
    mixed = p.predict([x for pair in zip(imgs_v, imgs_s) for x in pair], ["easy_vqa", "easy_vqa_shape"] * 4,
                      [x for q in qs for x in (q, None)])
    assert mixed[0::2] == sep_v and mixed[1::2] == sep_s
    assert all(r["prediction"] in ("circle", "rectangle", "triangle") for r in sep_s)
    assert cli.main(["predict", "--run", str(runs / "source_coop"), "--task", "easy_vqa_shape", "--device", "cpu",
                     *imgs_s[:2]]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [l.split("\t")[2] for l in out] == [r["prediction"] for r in sep_s[:2]]


def test_source_of_another_shape_or_backbone_is_refused(experiment, tmp_path):
    path, runs = experiment
    cfg = load_run_config(path, [f"output_dir={tmp_path}"])  # source_path defaults to <output_dir>/source_coop
    with pytest.raises(CheckpointError, match="source_coop not found"):
        run_stage(config_for_stage(cfg, "target"))
    src = str(runs / "source_coop")
    with pytest.raises(CheckpointError, match=r"expected prompt\.text\.length=6; found prompt\.text\.length=4"):
        run_stage(config_for_stage(cfg, "target", {"source_path": src, "prompt": {"text": {"length": 6}}}))
    other = write_tiny_backbone(tmp_path / "wide.json", layers=3)
    with pytest.raises(CheckpointError, match="another backbone: expected model_config="):
        run_stage(config_for_stage(cfg, "target", {"source_path": src, "backbone": {"model_config": other}}))
    # a bare prompts file (no config.json to compare): the shape check names the expected shape
    bare = tmp_path / "bare.safetensors"
    shutil.copy(runs / "source_coop" / "checkpoints" / "best" / "prompts.safetensors", bare)
    with pytest.raises(ShapeMismatchError, match="expects"):
        run_stage(config_for_stage(cfg, "target", {"source_path": str(bare), "prompt": {"text": {"length": 6}}}))


def test_cli_single_stage_commands(experiment, tmp_path, capsys):
    path, runs = experiment
    base = [f"output_dir={tmp_path}", f"source_path={runs / 'source_coop'}", "target.shots=1"]
    assert cli.main(["zeroshot", "--config", str(path), "--ensemble", *base]) == 0
    assert cli.main(["adapt", "--config", str(path), *base]) == 0
    assert cli.main(["adapt", "--config", str(path), "--scratch", *base]) == 0
    out = capsys.readouterr().out
    assert "| digits |" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single_coop_digits_k1_s1", "target_coop_digits_k1_s1",
                                                          "zeroshot_ens_digits"]
    saved = json.loads((tmp_path / "target_coop_digits_k1_s1" / "config.json").read_text())
    assert saved["prompt"]["text"]["source_path"] == str(runs / "source_coop")
