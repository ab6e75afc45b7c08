"""Multi-task scoring, stages (source → target), bad input and the Trainer with a shared-backbone teacher."""

from __future__ import annotations

import pytest
import torch

from datasets_vl.collate import collate_vl
from clip_helpers import make_batch

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, TaskInfo
from mvlpt.core import Trainer, TrainConfig
from mvlpt.core.checkpoint import save_tensors
from mvlpt.core.errors import CheckpointError, ConfigError, DataError, ShapeMismatchError, TaskIdError
from mvlpt.core.stages import PromptConfig

TASKS = [TaskInfo("pets", "classification", ["cat", "dog", "hamster"]),
         TaskInfo("cars", "classification", ["sedan", "truck"]),
         TaskInfo("birds", "classification", ["owl", "crow", "robin", "eagle"])]


def pc(method: str = "upt", text: int = 2, visual: int = 2, **kw) -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=text, **kw), visual=PromptConfig(length=visual, **kw))


def test_mixed_task_logits_are_masked_with_minus_inf(backbone):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, pc(), "source")
    b = make_batch([0, 1, 2, 1, 0], [2, 0, 3, 1, 0])
    out = m.step(b)
    assert out.logits.shape == (5, 9)  # 3 + 2 + 4 classes, fixed global layout
    assert torch.equal(out.logit_mask, torch.isfinite(out.logits))
    assert torch.isneginf(out.logits[~out.logit_mask]).all()
    assert out.logit_mask[0].tolist() == [True] * 3 + [False] * 6
    assert out.logit_mask[1].tolist() == [False] * 3 + [True] * 2 + [False] * 4
    assert out.hidden.shape == (5, 2, 64) and out.hidden_mask.all()
    # loss = mean cross-entropy within each sample's own task
    ce = [torch.nn.functional.cross_entropy(out.logits[i, m.layout.columns(k)][None], torch.tensor([y]))
          for i, (k, y) in enumerate(zip(b["task_ids"].tolist(), b["labels"].tolist()))]
    torch.testing.assert_close(out.loss, torch.stack(ce).mean())
    recs = m.predict(b)
    assert [r["task_id"] for r in recs] == [0, 1, 2, 1, 0]
    assert all(0 <= r["pred"] < len(TASKS[r["task_id"]].classnames) for r in recs)
    metrics = m.compute_metrics(recs)
    assert set(metrics) >= {"pets/accuracy", "cars/accuracy", "birds/accuracy", "score"}
    assert metrics["score"] == pytest.approx(sum(metrics[f"{t.name}/accuracy"] for t in TASKS) / 3)


def test_class_prompts_encoded_once_per_task_present(backbone):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, pc("coop"), "source")
    calls: list[list[int]] = []  # the tasks of each text-tower call
    orig = m.class_texts.features_many
    m.class_texts.features_many = lambda ctxs, ckpt=False: (calls.append(sorted(ctxs)), orig(ctxs, ckpt))[1]
    m.step(make_batch([0, 0, 2, 2, 0, 2, 0, 0], [0, 1, 2, 3, 1, 0, 2, 2]))
    assert calls == [[0, 2]]  # task 1 absent; the present tasks together once, not once per image or task
    calls.clear()
    m.eval()
    for seed in range(3):  # evaluation: prompts are fixed, so class features are encoded once per pass
        m.predict(make_batch([1, 1], [0, 1], seed))
    assert calls == [[1]]
    m.train()  # switching mode drops the cache (prompts may have changed)
    m.eval()
    m.predict(make_batch([1], [0]))
    assert calls == [[1], [1]]


def test_parameter_counts_per_task(backbone):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, pc("vpt", visual=4), "source")  # deep: (layers=2, l=4, d=64), rank 1
    counts = m.trainable_parameters_per_task()
    assert counts["per_task"] == 2 * (4 + 64) * 1
    assert counts["shared"] == 2 * 4 * 64
    assert counts["total"] == 3 * counts["per_task"] + counts["shared"]
    t = CLIPTaskModel(model, tok, TASKS, pc("vpt", visual=4), "teachers").trainable_parameters_per_task()
    assert t["per_task"] == 2 * 4 * 64 and t["shared"] == 0 and t["total"] == 3 * 2 * 4 * 64


def test_target_initialises_from_source_run(backbone, tmp_path):
    model, tok, _ = backbone
    src = CLIPTaskModel(model, tok, TASKS, pc("upt"), "source")
    save_tensors(tmp_path / "prompts.safetensors", src.trainable_state_dict())
    cfg = pc("upt", source_path=str(tmp_path), train=["task_factors"])  # the factors-only variant
    tgt = CLIPTaskModel(model, tok, [TaskInfo("flowers", "classification", ["rose", "tulip"])], cfg, "target")
    default = CLIPTaskModel(model, tok, [TaskInfo("flowers", "classification", ["rose", "tulip"])],
                            pc("upt", source_path=str(tmp_path)), "target")
    assert all(p.requires_grad for p in default.prompt_set.upt_mapping.parameters())  # MPT default: P* + mapping adapt
    for name in ("text_prompt", "visual_prompt"):
        s, t = src.prompt_modules()[name], tgt.prompt_modules()[name]
        torch.testing.assert_close(t.shared, s.shared)
        torch.testing.assert_close(t.task_u[0], s.task_u.mean(0))
    for k, v in src.prompt_set.upt_mapping.state_dict().items():
        torch.testing.assert_close(tgt.prompt_set.upt_mapping.state_dict()[k], v)
    assert not any(p.requires_grad for p in tgt.prompt_set.upt_mapping.parameters())
    # a source of another prompt shape / method is refused, naming what was expected
    with pytest.raises(ShapeMismatchError, match=r"text_prompt.*expects text_prompt of shape \(3, 64\)"):
        CLIPTaskModel(model, tok, TASKS[:1], pc("upt", text=3, source_path=str(tmp_path)), "target")
    vsrc = tmp_path / "vpt"
    vsrc.mkdir()
    save_tensors(vsrc / "prompts.safetensors", CLIPTaskModel(model, tok, TASKS, pc("vpt"), "source").trainable_state_dict())
    with pytest.raises(CheckpointError, match="text_prompt"):
        CLIPTaskModel(model, tok, TASKS[:1], pc("coop", source_path=str(vsrc)), "target")


def test_bad_input_errors(backbone):
    model, tok, _ = backbone
    m = CLIPTaskModel(model, tok, TASKS, pc("coop"), "single")
    with pytest.raises(DataError, match="label 3 is outside its 2 classes"):
        m.step(make_batch([1], [3]))
    with pytest.raises(TaskIdError, match="3 task"):
        m.step(make_batch([5], [0]))

    class DS:
        task_type = "classification"
        classnames = ["cat", "dog", "gerbil"]

    with pytest.raises(DataError, match="expected 'hamster', found 'gerbil'"):
        m.check_datasets([DS(), DS(), DS()])
    with pytest.raises(ConfigError, match="expected 3 datasets"):
        m.check_datasets([DS()])
    with pytest.raises(ConfigError, match="stage must be one of"):
        CLIPTaskModel(model, tok, TASKS, pc("coop"), "pretrain")
    with pytest.raises(ConfigError, match="duplicate task names"):
        CLIPTaskModel(model, tok, [TASKS[0], TASKS[0]], pc("coop"), "single")
    with pytest.raises(ConfigError, match="upt"):
        CLIPTaskModel(model, tok, TASKS, pc("upt", visual=0), "single")


class ImageTask(torch.utils.data.Dataset):
    def __init__(self, n_classes: int, n: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 32, 32, generator=g)
        self.y = torch.randint(0, n_classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": int(self.y[i]), "question": None, "answer_scores": None}


def test_source_stage_with_teacher_sharing_the_backbone(backbone, tmp_path):
    model, tok, _ = backbone
    teacher = CLIPTaskModel(model, tok, TASKS, pc("upt"), "teachers")
    student = CLIPTaskModel(model, tok, TASKS, pc("upt"), "source")
    assert teacher.clip is student.clip  # one frozen CLIP in memory
    data = [ImageTask(len(t.classnames), seed=k) for k, t in enumerate(TASKS)]
    cfg = TrainConfig(max_steps=3, batch_size=6, log_every=1, device="cpu", progress=False, tensorboard=False,
                      eval_batch_size=8)
    before = student.prompt_set.text_prompt.shared.detach().clone()
    result = Trainer(student, data, collate_vl, cfg, tmp_path / "run", eval_datasets=data, teacher=teacher).fit()
    assert result["step"] == 3
    assert set(result["final"]) >= {"pets/accuracy", "cars/accuracy", "birds/accuracy", "score"}
    assert not torch.equal(before, student.prompt_set.text_prompt.shared)
    saved = (tmp_path / "run" / "checkpoints").rglob("prompts.safetensors")
    from mvlpt.core.checkpoint import load_tensors

    keys = set(load_tensors(next(iter(saved))))
    assert {"text_prompt.shared", "visual_prompt.task_u", "upt_mapping.mixer.resblocks.0.attn.in_proj_weight"} <= keys
    assert all(p.grad is None for p in model.parameters())
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "kl_loss" in log and "mse_loss" in log
