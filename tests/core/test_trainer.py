import json

import pytest
import torch

from run_helpers import stop_after as _stop_after
from toy import ToyDataset, ToyTaskModel, toy_collate

from mvlpt.core import (DecomposedPrompt, PromptConfig, Trainer, TrainConfig, VanillaPrompt, build_stage_prompt,
                        from_dict, load_run_prompts, resolve_prompt_config)
from mvlpt.core.logging_utils import read_metrics


def _cfg(**kw):
    base = {"max_steps": 40, "batch_size": 16, "log_every": 5, "progress": False, "optim": {"name": "adamw", "lr": 0.05},
            "tensorboard": False}
    base.update(kw)
    return from_dict(TrainConfig, base)


def _datasets():
    return [ToyDataset(0), ToyDataset(1)]


def _losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir) if r["split"] == "train"]


def test_loop_lowers_toy_loss(tmp_path):
    torch.manual_seed(0)
    model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    Trainer(model, _datasets(), toy_collate, _cfg(max_steps=80, eval_at_start=True), tmp_path,
            eval_datasets=_datasets()).fit()
    losses = _losses(tmp_path)
    assert losses[-1] < losses[0] - 0.05
    evals = [r for r in read_metrics(tmp_path) if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 80] and evals[-1]["accuracy"] > evals[0]["accuracy"]
    assert (tmp_path / "checkpoints" / "step_80" / "prompts.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["train"]["max_steps"] == 80


def test_only_trainable_groups_change_and_frozen_stay_bit_identical(tmp_path):
    torch.manual_seed(0)
    prompt = DecomposedPrompt(2, (4, 8))
    prompt.set_trainable(["task_factors"])
    model = ToyTaskModel(prompt)
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    shared0, u0 = prompt.shared.detach().clone(), prompt.task_u.detach().clone()
    Trainer(model, _datasets(), toy_collate, _cfg(max_steps=10), tmp_path).fit()
    assert torch.equal(prompt.shared, shared0)
    assert not torch.equal(prompt.task_u, u0)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen[k])
    assert all(p.grad is None for p in model.backbone.parameters())


def test_save_load_round_trip_gives_identical_prompts(tmp_path):
    torch.manual_seed(0)
    model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    Trainer(model, _datasets(), toy_collate, _cfg(max_steps=5), tmp_path).fit()
    tensors, config = load_run_prompts(tmp_path / "checkpoints" / "step_5")
    fresh = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    fresh.load_trainable_state_dict(tensors)
    ids = torch.tensor([0, 1, 1])
    assert torch.equal(fresh.prompt(ids), model.prompt(ids))
    assert config["train"]["max_steps"] == 5


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_equivalence(tmp_path, accum):
    """N steps straight == N/2 steps, stop, resume N/2 (bitwise on CPU), metrics included."""
    def run(run_dir, max_steps):
        torch.manual_seed(0)
        model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
        cfg = _cfg(max_steps=max_steps, grad_accum_steps=accum, log_every=1, eval_every=4,
                   schedule={"name": "cosine", "warmup_steps": 2}, sampling={"strategy": "temperature"})
        return model, Trainer(model, _datasets(), toy_collate, cfg, run_dir, eval_datasets=_datasets())

    straight, t1 = run(tmp_path / "a", 12)
    t1.fit()
    _, t2 = run(tmp_path / "c", 12)
    t2.cfg.save_every = 6
    _stop_after(t2, 6)  # stops like a kill right after the step-6 checkpoint
    again, t3 = run(tmp_path / "c", 12)
    t3.fit()
    for a, b in zip(straight.prompt.parameters(), again.prompt.parameters()):
        assert torch.equal(a, b)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "a")) == strip(read_metrics(tmp_path / "c"))


def test_three_stages_are_configurations_of_one_loop(tmp_path):
    """teachers (vanilla) → source (decomposed + distillation) → target (from the source: P* and factors by
    default, as MPT; the factors-only variant keeps P* fixed)."""
    torch.manual_seed(0)
    data = _datasets()
    teach_cfg = resolve_prompt_config(PromptConfig(length=4), "teachers")
    teacher = ToyTaskModel(build_stage_prompt(teach_cfg, 2, (4, 8)))
    assert isinstance(teacher.prompt, VanillaPrompt)
    Trainer(teacher, data, toy_collate, _cfg(max_steps=30), tmp_path / "teachers").fit()

    src_cfg = resolve_prompt_config(PromptConfig(length=4), "source")
    student = ToyTaskModel(build_stage_prompt(src_cfg, 2, (4, 8)))
    frozen_teacher = ToyTaskModel(VanillaPrompt(2, (4, 8)))
    frozen_teacher.load_trainable_state_dict(load_run_prompts(tmp_path / "teachers")[0])
    teacher_before = frozen_teacher.prompt.prompts.detach().clone()
    cfg = _cfg(max_steps=30, distill={"kl_weight": 1.0, "mse_weight": 0.5, "temperature": 2.0})
    Trainer(student, data, toy_collate, cfg, tmp_path / "source", teacher=frozen_teacher).fit()
    rows = [r for r in read_metrics(tmp_path / "source") if r["split"] == "train"]
    assert "kl_loss" in rows[0] and "mse_loss" in rows[0]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert torch.equal(frozen_teacher.prompt.prompts, teacher_before)

    default_tgt = resolve_prompt_config(PromptConfig(length=4, source_path=str(tmp_path / "source")), "target")
    assert default_tgt.train == ["shared", "task_factors"] and default_tgt.init == "source"
    tgt_cfg = resolve_prompt_config(PromptConfig(length=4, source_path=str(tmp_path / "source"), train=["task_factors"]),
                                    "target")
    target_prompt = build_stage_prompt(tgt_cfg, 1, (4, 8), source_key="prompt.")
    torch.testing.assert_close(target_prompt.shared, student.prompt.shared)
    torch.testing.assert_close(target_prompt.task_u[0], student.prompt.task_u.mean(0))
    target = ToyTaskModel(target_prompt, num_tasks=1)
    shared0 = target_prompt.shared.detach().clone()
    Trainer(target, [ToyDataset(5)], toy_collate, _cfg(max_steps=30), tmp_path / "target").fit()
    assert torch.equal(target_prompt.shared, shared0)
    losses = _losses(tmp_path / "target")
    assert losses[-1] < losses[0]


def test_nonfinite_loss_stop_and_skip(tmp_path):
    from toy_train import SlowToy

    from mvlpt.core import NonFiniteLossError

    torch.manual_seed(0)
    model = SlowToy(DecomposedPrompt(2, (4, 8)), nan_at=5)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 5.*last good checkpoint"):
        Trainer(model, _datasets(), toy_collate, _cfg(max_steps=10, save_every=2), tmp_path / "stop").fit()
    assert (tmp_path / "stop" / "checkpoints" / "step_4").is_dir()
    assert not (tmp_path / "stop" / "checkpoints" / "step_6").exists()

    model = SlowToy(DecomposedPrompt(2, (4, 8)), nan_at=5)
    out = Trainer(model, _datasets(), toy_collate, _cfg(max_steps=10, nonfinite="skip"), tmp_path / "skip").fit()
    assert out["skipped_batches"] == 1 and out["step"] == 10
    assert all(torch.isfinite(p).all() for p in model.prompt.parameters())


def test_sampler_mixing_grouping_and_rank_shards():
    from mvlpt.core import MultiTaskBatchSampler, SamplingConfig
    from mvlpt.core.sampling import task_probabilities

    assert task_probabilities([100, 400], SamplingConfig("proportional")) == [0.2, 0.8]
    assert task_probabilities([100, 400], SamplingConfig("uniform")) == [0.5, 0.5]
    t = task_probabilities([100, 400], SamplingConfig("temperature", temperature=2.0))
    assert t[0] == pytest.approx(10 / 30)
    grouped = MultiTaskBatchSampler([30, 50, 20], 8, SamplingConfig(task_grouped=True), seed=3)
    batches = [b for _, b in zip(range(20), grouped)]
    assert all(len({k[0] for k in b}) == 1 for b in batches)
    assert len({b[0][0] for b in batches}) > 1
    # within a pass, no example repeats; two ranks split one global batch without overlap
    one = next(iter(MultiTaskBatchSampler([30, 50], 8, seed=1)))
    r0 = next(iter(MultiTaskBatchSampler([30, 50], 4, seed=1, rank=0, world_size=2)))
    r1 = next(iter(MultiTaskBatchSampler([30, 50], 4, seed=1, rank=1, world_size=2)))
    assert r0 + r1 == one and len(set(one)) == 8


def test_training_steps_read_the_host_once_except_at_logging_steps(tmp_path, monkeypatch):
    """Loss terms, distillation shares and the gradient norm stay on the device between logging steps: a
    step's only host read is the non-finite check (``train.nonfinite``); the logged means equal the
    per-step values averaged on the host."""
    from sync_counter import SyncCounter

    from mvlpt.core import prompts as core_prompts

    torch.manual_seed(0)
    teacher = ToyTaskModel(VanillaPrompt(2, (4, 8)))
    model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    cfg = _cfg(max_steps=8, log_every=4, clip_grad_norm=1.0, eval_every=0, save_every=0,
               distill={"kl_weight": 1.0, "mse_weight": 1.0})
    trainer = Trainer(model, [ToyDataset(0), ToyDataset(1, n=50)], toy_collate, cfg, tmp_path / "r", teacher=teacher)
    reads: list[list[str]] = []
    original = trainer._train_step

    def counted(loader_iter, *a, **k):
        counter = SyncCounter()

        def batches():  # the loader collates on the host: not counted
            while True:
                counter.paused = True
                batch = next(loader_iter)
                counter.paused = False
                yield batch

        optimizer = a[1]  # AdamW keeps its step counts on the host (not a device read)
        counter.ignore = [st["step"] for st in optimizer.state.values() if "step" in st]
        with counter:
            out = original(batches(), *a, **k)
        reads.append(counter.calls)
        return out

    trainer._train_step = counted
    # the toy model's prompt forward checks its task ids on the host (CPU only): not the loop's
    monkeypatch.setattr(core_prompts, "_as_task_ids", lambda t, n, d: t.to(d).long())
    trainer.fit()
    # from step 2 (the first creates AdamW's host-side step counts, which the counter then ignores)
    assert len(reads) == 8 and all(r == ["__bool__"] for r in reads[1:]), reads
    rows = [r for r in read_metrics(tmp_path / "r") if r["split"] == "train"]
    assert [r["step"] for r in rows] == [4, 8]
    for key in ("loss", "task_loss", "kl_loss", "mse_loss", "task_share", "kl_share", "mse_share", "grad_norm"):
        assert key in rows[0] and rows[0][key] == rows[0][key], key  # present and not NaN
    assert rows[0]["task_share"] + rows[0]["kl_share"] + rows[0]["mse_share"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("ties, expected", [("first", [10, 10, 30, 30]), ("last", [10, 20, 30, 40])])
def test_select_ties_picks_the_earliest_or_the_latest_of_equal_scores(ties, expected):
    from types import SimpleNamespace

    from mvlpt.core.trainer import Trainer as _Trainer

    fake = SimpleNamespace(cfg=TrainConfig(select_ties=ties), best={"score": None, "step": None, "metrics": {}},
                           step=0, info=SimpleNamespace(is_main=False))
    picked = []
    for step, score in ((10, 60.0), (20, 60.0), (30, 65.0), (40, 65.0)):  # a flat, few-image validation score
        fake.step = step
        _Trainer._save_best(fake, {"score": score})
        picked.append(fake.best["step"])
    assert picked == expected


def test_with_eval_at_start_the_start_is_a_selection_candidate(tmp_path):
    """Validation labels = the start model's own predictions: every step of training on other labels can
    only lose validation accuracy, so the best checkpoint is the start (step 0), prompts and all."""
    torch.manual_seed(0)
    prompt = DecomposedPrompt(2, (4, 8))
    model = ToyTaskModel(prompt)
    start = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    val = _datasets()
    for task, ds in enumerate(val):
        with torch.no_grad():
            batch = toy_collate([{**ds[i], "task_id": task, "index": i} for i in range(len(ds))])
            ds.y = model._logits(batch)[0].argmax(-1)
    trainer = Trainer(model, _datasets(), toy_collate, _cfg(max_steps=40, eval_every=20, eval_at_start=True), tmp_path,
                      eval_datasets=val)
    trainer.fit()
    evals = [r for r in read_metrics(tmp_path) if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 20, 40] and evals[0]["accuracy"] == 1.0 > evals[-1]["accuracy"]
    assert trainer.best["step"] == 0
    assert json.loads((tmp_path / "checkpoints" / "best" / "metrics.json").read_text())["step"] == 0
    from mvlpt.core.checkpoint import load_tensors

    best = load_tensors(tmp_path / "checkpoints" / "best" / "prompts.safetensors")
    assert all(torch.equal(best[k], v) for k, v in start.items())
