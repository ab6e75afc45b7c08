"""``source_mode: mvlpt``, the official MVLPT recipe: one shared vanilla prompt, no teachers, softmax
over the union of the source classes; the target fine-tunes a vanilla prompt initialised from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from datasets_vl.collate import collate_vl
from clip_helpers import make_batch, tiny_run

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, TaskInfo
from mvlpt.clip import cli
from mvlpt.clip.backbone import create_backbone
from mvlpt.clip.pipeline import config_for_stage, load_run_config, run_stage
from mvlpt.clip.pipeline.run_config import CLIPRunConfig, MethodSpec
from mvlpt.clip.pipeline.stages import PREPARE
from mvlpt.clip.scoring import ClassLayout, batch_loss
from mvlpt.core.checkpoint import load_run_prompts, save_tensors
from mvlpt.core.errors import CheckpointError, ConfigError, ShapeMismatchError
from mvlpt.core.prompts import DecomposedPrompt, VanillaPrompt
from mvlpt.core.stages import PromptConfig, build_stage_prompt, resolve_prompt_config
from mvlpt.core.transfer import init_vanilla_from_source

TASKS = [TaskInfo("pets", "classification", ["cat", "dog", "hamster"]),
         TaskInfo("cars", "classification", ["sedan", "truck"]),
         TaskInfo("birds", "classification", ["owl", "crow", "robin", "eagle", "cat"])]  # "cat" twice: 2 columns


def pc(method: str, text: int = 2, visual: int = 2, **kw) -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=text), visual=PromptConfig(length=visual), **kw)


# ------------------------------------------------------------------------------------------ model

@pytest.mark.parametrize("method", ["coop", "upt"])
def test_union_logits_and_loss_match_a_hand_softmax(backbone, method):
    model, tok, _ = backbone
    torch.manual_seed(0)
    m = CLIPTaskModel(model, tok, TASKS, pc(method, shared_prompt=True), "source")
    for name, mod in m.prompt_modules().items():
        if name != "upt_mapping":
            assert isinstance(mod, VanillaPrompt) and mod.num_tasks == 1, name
    with torch.no_grad():  # a non-trivial shared prompt
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    b = make_batch([0, 1, 2, 1, 0, 2], [2, 0, 4, 1, 0, 3])
    out = m.step(b)
    assert out.logits.shape == (6, 10) and torch.isfinite(out.logits).all() and out.logit_mask.all()

    # by hand: the single prompt (task 0) for everyone; class features of all tasks concatenated
    prompts = m.prompt_set(torch.tensor([0]))
    ctx = prompts.text[0]
    raw = torch.cat([m.class_texts.features(k, ctx).float() for k in range(len(TASKS))])  # (3 + 2 + 5, e)
    txt = F.normalize(raw, dim=-1)
    vis = prompts.visual.expand(6, *prompts.visual.shape[1:]) if prompts.visual is not None else None
    img = m.vision_tower.encode(b["images"], vis) if vis is not None else m.vision_tower.encode(b["images"])
    logits = m.logit_scale * F.normalize(img.float(), dim=-1) @ txt.T
    union_y = torch.tensor([0, 3, 5, 3, 0, 5]) + b["labels"]  # offsets 0 / 3 / 5
    torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, union_y), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.hidden[:, 1], raw[union_y], rtol=1e-5, atol=1e-5)  # target class feature
    # not the per-task softmax
    per_task = torch.stack([F.cross_entropy(logits[i, m.layout.columns(k)][None], b["labels"][i:i + 1])
                            for i, k in enumerate(b["task_ids"].tolist())]).mean()
    assert not torch.allclose(out.loss, per_task)
    out.loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    # predictions are per task (argmax over the sample's own classes), as MVLPT evaluates each dataset
    recs = m.predict(b)
    assert [r["pred"] for r in recs] == [int(logits[i, m.layout.columns(k)].argmax())
                                         for i, k in enumerate(b["task_ids"].tolist())]


def test_vqa_samples_keep_their_own_candidates(backbone):
    """Mixed sources: classification samples get the union of the classification classes, VQA samples
    their own answer candidates (soft cross-entropy), all through the one shared prompt."""
    model, tok, _ = backbone
    answers = ["yes", "no", "red", "blue", "green"]
    tasks = [TaskInfo("shapes", "classification", ["circle", "square"]),
             TaskInfo("vqa", "vqa", answers, template="question: {question} answer: {}."),
             TaskInfo("colors", "classification", ["red", "blue", "green"])]
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.randn(3, 32, 32, generator=g)  # noqa: E731
    cls = lambda k, y, i: {"image": img(), "label": y, "question": None, "answer_scores": None,  # noqa: E731
                           "task_id": k, "index": i}
    vqa = lambda q, sc, i: {"image": img(), "label": max(sc, key=sc.get), "question": q, "answer_scores": sc,  # noqa: E731
                            "num_answers": len(answers), "task_id": 1, "index": i}
    batch = collate_vl([cls(0, 1, 0), vqa("what color is it?", {2: 1.0, 3: 1 / 3}, 0), cls(2, 2, 1),
                        vqa("is it round?", {0: 1.0}, 1), cls(2, 0, 2)])
    torch.manual_seed(0)
    m = CLIPTaskModel(model, tok, tasks, pc("coop", shared_prompt=True, vqa_max_answers=3), "source")
    out = m.step(batch)
    assert m.layout.union_columns == [0, 1, 5, 6, 7]
    assert torch.equal(out.logit_mask, torch.isfinite(out.logits))
    assert out.logit_mask[0].tolist() == [True, True, False, False, False, True, True, True]
    assert out.logit_mask[1].tolist() == [False, False, True, True, True, False, False, False]
    ctx = m.prompt_set(torch.tensor([0])).text[0]
    txt = torch.cat([F.normalize(m.class_texts.features(k, ctx).float(), dim=-1) for k in (0, 2)])
    image = F.normalize(m.vision_tower.encode(batch["images"]).float(), dim=-1)
    rows, cols = torch.tensor([0, 2, 4]), torch.tensor([0, 1, 5, 6, 7])
    union = m.logit_scale * image[rows] @ txt.T
    torch.testing.assert_close(out.logits[rows[:, None], cols[None, :]], union, rtol=1e-5, atol=1e-5)
    ce = F.cross_entropy(union, torch.tensor([1, 2 + 2, 2 + 0]), reduction="sum")
    vqa_rows = torch.tensor([1, 3])
    sub = {"task_ids": batch["task_ids"][vqa_rows], "labels": batch["labels"][vqa_rows],
           "answer_scores": batch["answer_scores"][vqa_rows]}
    vqa_loss = batch_loss(ClassLayout(tasks, 3), sub, out.logits[vqa_rows])  # per-task soft CE, 2 counted rows
    torch.testing.assert_close(out.loss, (ce + 2 * vqa_loss) / 5, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="needs at least one classification task"):
        ClassLayout([tasks[1]], union=True)
    with pytest.raises(ConfigError, match="prompt.text.kind"):
        CLIPTaskModel(model, tok, tasks, CLIPPromptConfig(method="coop", text=PromptConfig(length=2, kind="decomposed"),
                                                          shared_prompt=True), "source")


# --------------------------------------------------------------------------------------- transfer

def test_vanilla_from_vanilla_source(tmp_path):
    torch.manual_seed(0)
    src = VanillaPrompt(1, (3, 8), init_std=1.0)
    tgt = VanillaPrompt(2, (3, 8))
    init_vanilla_from_source(tgt, src.state_dict())
    assert torch.equal(tgt.prompts[0], src.prompts[0]) and torch.equal(tgt.prompts[1], src.prompts[0])
    with pytest.raises(ShapeMismatchError, match="expects"):
        init_vanilla_from_source(VanillaPrompt(1, (4, 8)), src.state_dict())
    many = VanillaPrompt(3, (3, 8), init_std=1.0)
    with pytest.raises(CheckpointError, match="source_init=task"):
        init_vanilla_from_source(tgt, many.state_dict())
    init_vanilla_from_source(tgt, many.state_dict(), source_task=2)
    assert torch.equal(tgt.prompts[1], many.prompts[2])
    # through the stage preset: init=source + kind=vanilla, everything trains
    (tmp_path / "v").mkdir()
    (tmp_path / "d").mkdir()
    save_tensors(tmp_path / "v" / "prompts.safetensors", {f"text_prompt.{k}": v for k, v in src.state_dict().items()})
    cfg = resolve_prompt_config(PromptConfig(kind="vanilla", length=3, source_path=str(tmp_path / "v")), "target")
    p = build_stage_prompt(cfg, 1, (3, 8), source_key="text_prompt.")
    assert isinstance(p, VanillaPrompt) and torch.equal(p.prompts, src.prompts) and p.prompts.requires_grad
    # mixing the kinds is refused with the key to change
    dec = DecomposedPrompt(2, (3, 8))
    save_tensors(tmp_path / "d" / "prompts.safetensors", {f"text_prompt.{k}": v for k, v in dec.state_dict().items()})
    with pytest.raises(ConfigError, match="set prompt.kind=decomposed"):
        build_stage_prompt(cfg.__class__(**{**cfg.__dict__, "source_path": str(tmp_path / "d")}), 1, (3, 8),
                           source_key="text_prompt.")
    dcfg = resolve_prompt_config(PromptConfig(kind="decomposed", length=3, source_path=str(tmp_path / "v")), "target")
    with pytest.raises(ConfigError, match="set prompt.kind=vanilla"):
        build_stage_prompt(dcfg, 1, (3, 8), source_key="text_prompt.")


# --------------------------------------------------------------------------------------- config

def test_source_mode_validation_names_the_key():
    with pytest.raises(ConfigError, match="source_mode"):
        load_run_config(data={"source_mode": "mvlp"})
    with pytest.raises(ConfigError, match="source_mode"):
        CLIPRunConfig(source_mode="bogus").validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"sweep.methods\[1\].source_mode"):
        load_run_config(data={"sweep": {"methods": [{"name": "a", "stage": "target"},
                                                    {"name": "b", "stage": "target", "source_mode": "x"}]}})
    with pytest.raises(ConfigError, match="'CoOp': source_mode applies to multitask lines"):
        load_run_config(data={"sweep": {"methods": [{"name": "CoOp", "stage": "single", "source_mode": "mvlpt"}]}})
    assert MethodSpec("M", "target", "coop", source_mode="mvlpt").source_mode == "mvlpt"
    cfg = load_run_config(data={"output_dir": "out", "source_mode": "mvlpt", "sources": ["digits"], "target": "digits"})
    assert cfg.resolved_source_path() == Path("out/source_coop_mvlpt")
    assert config_for_stage(cfg, "source").resolved_run_dir() == Path("out/source_coop_mvlpt")
    assert config_for_stage(cfg, "target").resolved_run_dir() == Path("out/target_coop_mvlpt_digits")
    assert config_for_stage(cfg, "teachers").resolved_run_dir() == Path("out/teachers_coop")
    mpt = load_run_config(data={"output_dir": "out"})
    assert mpt.source_mode == "mpt" and mpt.resolved_source_path() == Path("out/source_coop")


# --------------------------------------------------------------------------------------- pipeline

@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvlpt_exp")
    cfg = tiny_run(
        root,
        prompt={"method": "coop", "text": {"length": 4}, "visual": {"length": 2}},
        train={"batch_size": 16, "eval_batch_size": 64, "max_steps": 6, "log_every": 1, "clip_grad_norm": 0.0,
               "optim": {"name": "adamw", "lr": 0.05, "weight_decay": 0.0}, "schedule": {"name": "constant"},
               "sampling": {"strategy": "uniform"}},
        output_dir=str(root / "runs"),
        sources=[{"dataset": "easy_vqa_shape", "max_train": 32, "max_eval": 12},
                 {"dataset": "easy_vqa_color", "max_train": 32, "max_eval": 12}],
        target={"dataset": "digits", "max_eval": 20, "hflip": False},
        stages={"teachers": {"train": {"max_steps": 4}}, "source": {"train": {"max_steps": 8}}},
        sweep={"shots": [1], "seeds": [1],
               "methods": [{"name": "MCoOp (MPT)", "stage": "target", "method": "coop"},
                           {"name": "MCoOp (MVLPT)", "stage": "target", "method": "coop", "source_mode": "mvlpt"}]},
    )
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    threads = torch.get_num_threads()
    assert cli.main(["experiment", "--config", str(path)]) == 0
    yield path, Path(cfg["output_dir"])
    torch.set_num_threads(threads)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sweep_runs_both_source_modes(experiment):
    _, runs = experiment
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == [
        "fewshot_digits", "source_coop", "source_coop_mvlpt", "teachers_coop"]
    table = (runs / "fewshot_digits" / "results.md").read_text()
    assert "| MCoOp (MPT) |" in table and "| MCoOp (MVLPT) |" in table
    mvlpt_src = json.loads((runs / "source_coop_mvlpt" / "config.json").read_text())
    assert mvlpt_src["source_mode"] == "mvlpt" and mvlpt_src["prompt"]["shared_prompt"] is True
    assert mvlpt_src["teacher_path"] is None and mvlpt_src["prompt"]["text"]["kind"] == "vanilla"
    tensors, _ = load_run_prompts(runs / "source_coop_mvlpt")
    assert list(tensors) == ["text_prompt.prompts"] and tensors["text_prompt.prompts"].shape == (1, 4, 32)
    train = [r for r in _rows(runs / "source_coop_mvlpt") if r["split"] == "train"]
    assert len(train) == 8 and not any("kl_loss" in r or "mse_loss" in r for r in train)  # no teacher
    assert any("kl_loss" in r for r in _rows(runs / "source_coop") if r["split"] == "train")  # MPT unchanged
    tgt = json.loads((runs / "fewshot_digits" / "MCoOp-MVLPT" / "k1_s1" / "config.json").read_text())
    assert tgt["source_path"].endswith("source_coop_mvlpt") and tgt["prompt"]["text"]["kind"] == "vanilla"
    mpt_tgt = json.loads((runs / "fewshot_digits" / "MCoOp-MPT" / "k1_s1" / "config.json").read_text())
    assert mpt_tgt["source_path"].endswith("source_coop") and mpt_tgt["source_mode"] == "mpt"


def test_mvlpt_source_consults_no_teacher(experiment, tmp_path):
    """Teacher settings (a missing teacher run, distillation weights) are ignored in mvlpt mode."""
    path, _ = experiment
    cfg = load_run_config(path, [f"output_dir={tmp_path}"])
    extra = {"source_mode": "mvlpt", "teacher_path": str(tmp_path / "no_teachers"),
             "train": {"max_steps": 2, "distill": {"kl_weight": 1.0, "mse_weight": 1.0}}}
    res = run_stage(config_for_stage(cfg, "source", extra))
    assert res.run_dir == tmp_path / "source_coop_mvlpt" and res.steps == 2
    assert not any("kl_loss" in r for r in _rows(res.run_dir))
    with pytest.raises(CheckpointError, match="no_teachers not found"):  # the MPT source does need it
        run_stage(config_for_stage(cfg, "source", {**extra, "source_mode": "mpt"}))
    # a VQA source keeps its own answer candidates (the classification sources share the union)
    mixed = {**extra, "run_dir": str(tmp_path / "mixed"), "prompt": {"vqa_max_answers": 4},
             "sources": [{"dataset": "easy_vqa", "max_train": 8, "max_eval": 4},
                         {"dataset": "easy_vqa_shape", "max_train": 8, "max_eval": 4}]}
    res = run_stage(config_for_stage(cfg, "source", mixed))
    assert {"easy_vqa/accuracy", "easy_vqa_shape/accuracy"} <= set(res.metrics)
    vqa = {**extra, "sources": [{"dataset": "easy_vqa", "max_train": 8, "max_eval": 4}]}
    with pytest.raises(ConfigError, match=r"source_mode: mvlpt .*at least one classification source"):
        run_stage(config_for_stage(cfg, "source", vqa))


def test_target_starts_from_the_shared_prompt_and_trains_all_of_it(experiment):
    path, runs = experiment
    cfg = load_run_config(path)
    tcfg = config_for_stage(cfg, "target", {"source_mode": "mvlpt", "target": {"shots": 1}})
    bb = create_backbone(tcfg.backbone)
    prepared, teacher = PREPARE["target"](tcfg, bb, [])
    assert teacher is None
    info = [TaskInfo("digits", "classification", [str(i) for i in range(10)])]
    model = CLIPTaskModel(bb.model, bb.tokenizer, info, prepared.prompt, "target")
    src, _ = load_run_prompts(runs / "source_coop_mvlpt")
    prompt = model.prompt_modules()["text_prompt"]
    assert isinstance(prompt, VanillaPrompt) and prompt.num_tasks == 1
    assert torch.equal(prompt.prompts.detach(), src["text_prompt.prompts"])
    assert all(p.requires_grad for p in prompt.parameters())
    assert model.trainable_parameters_per_task()["total"] == src["text_prompt.prompts"].numel()
    trained, _ = load_run_prompts(runs / "fewshot_digits" / "MCoOp-MVLPT" / "k1_s1")
    assert not torch.equal(trained["text_prompt.prompts"], src["text_prompt.prompts"])  # fine-tuned
    # an MPT target cannot start from the mvlpt source (and vice versa): the error names source_mode
    with pytest.raises(ConfigError, match="source_mode: mvlpt"):
        PREPARE["target"](config_for_stage(cfg, "target", {"source_path": str(runs / "source_coop_mvlpt")}), bb, [])
    with pytest.raises(ConfigError, match="source_mode: mpt"):
        PREPARE["target"](config_for_stage(cfg, "target", {"source_mode": "mvlpt",
                                                           "source_path": str(runs / "source_coop")}), bb, [])
