"""MPT's mechanism is active: factors leave their init, prompts stay bounded, distillation carries
signal, per-task clipping keeps teachers independent, health checks fire."""

import json

import pytest
import torch

from toy import ToyDataset, ToyTaskModel, toy_collate

from mvlpt.core import DecomposedPrompt, Trainer, TrainConfig, VanillaPrompt, from_dict
from mvlpt.core.health import HealthCheckError, HealthConfig, HealthWarning, check_consumed_run, find_problems
from mvlpt.core.logging_utils import read_metrics
from mvlpt.core.mechanism import mechanism_stats, pairwise_distance, snapshot
from mvlpt.core.optim import build_optimizer, group_lr_multiplier


def _cfg(**kw):
    base = {"max_steps": 40, "batch_size": 16, "log_every": 5, "progress": False, "tensorboard": False,
            "optim": {"name": "adamw", "lr": 0.05}}
    base.update(kw)
    return from_dict(TrainConfig, base)


def _source_run(tmp_path, optim, steps=40, **kw):
    torch.manual_seed(0)
    model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    out = Trainer(model, [ToyDataset(0), ToyDataset(1)], toy_collate, _cfg(max_steps=steps, optim=optim, **kw), tmp_path,
                  eval_datasets=[ToyDataset(0, n=16), ToyDataset(1, n=16)]).fit()
    return model, out["mechanism"]


@pytest.mark.parametrize("optim", [{"name": "sgd", "lr": 0.05}, {"name": "adamw", "lr": 0.3}])
def test_task_factors_leave_their_init_and_tasks_differ(tmp_path, optim):
    _, mech = _source_run(tmp_path / "default", optim)
    assert mech["mech/prompt/factor_dev_mean"] >= 0.05
    assert mech["mech/prompt/pairwise_dist"] >= 0.10
    assert mech["mech/prompt/pairwise_dist"] > 3 * mech["mech/prompt/pairwise_dist_init"]
    rows = [r for r in read_metrics(tmp_path / "default") if r["split"] == "mechanism"]
    assert rows and "mech/prompt/factor_dev/task0" in rows[-1]
    assert json.loads((tmp_path / "default" / "mechanism.json").read_text())["step"] == 40


def test_sgd_factors_are_inert_at_the_prompt_rate(tmp_path):
    """Why the factors get their own rate: at multiplier 1, SGD barely moves U Vᵀ (gradient ∝ P*)."""
    _, same = _source_run(tmp_path / "same", {"name": "sgd", "lr": 0.05, "group_lr": {"task_factors": 1.0}})
    _, default = _source_run(tmp_path / "default", {"name": "sgd", "lr": 0.05})
    assert same["mech/prompt/factor_dev_mean"] < 0.05
    assert default["mech/prompt/factor_dev_mean"] > 5 * same["mech/prompt/factor_dev_mean"]


def test_adamw_at_the_paper_rate_keeps_the_prompt_bounded(tmp_path):
    """AdamW lr 0.3 (MPT's rate) with the same rate on the factors makes U Vᵀ explode; the default does not."""
    model_same, _ = _source_run(tmp_path / "same", {"name": "adamw", "lr": 0.3, "group_lr": {"task_factors": 1.0}},
                                clip_grad_norm=0.0)
    model_def, _ = _source_run(tmp_path / "default", {"name": "adamw", "lr": 0.3}, clip_grad_norm=0.0)

    def spread(m):
        mat = m.prompt.task_matrix(torch.arange(2)).detach()
        return float(mat.max() - mat.min())

    assert spread(model_same) > 3 * spread(model_def)
    assert spread(model_def) < 4.0


def test_group_learning_rates_and_defaults():
    from mvlpt.core import ConfigError
    from mvlpt.core.optim import OptimConfig

    p = DecomposedPrompt(2, (3, 4))
    opt = build_optimizer(p.parameters(), OptimConfig(name="sgd", lr=0.1, group_lr={"shared": 2.0}),
                          {"shared": [p.shared], "task_factors": [p.task_u, p.task_v]})
    lrs = {g["group"]: g["lr"] for g in opt.param_groups}
    assert lrs["shared"] == pytest.approx(0.2) and lrs["task_factors"] == pytest.approx(0.1 * group_lr_multiplier(
        OptimConfig(name="sgd"), "task_factors"))
    assert group_lr_multiplier(OptimConfig(name="adamw"), "task_factors") < 1 < group_lr_multiplier(OptimConfig(name="sgd"), "task_factors")
    with pytest.raises(ConfigError, match="group_lr: unknown parameter group 'factors'"):
        from_dict(TrainConfig, {"optim": {"group_lr": {"factors": 2.0}}})


def test_mechanism_figures_by_hand():
    torch.manual_seed(0)
    p = DecomposedPrompt(3, (2, 4))
    start = snapshot({"prompt": p})
    with torch.no_grad():
        p.task_u[1].mul_(2.0)  # task 1's matrix doubles: relative change 1/2
    stats = mechanism_stats({"prompt": p}, start, ["a", "b", "c"], {"prompt": 0.5})
    assert stats["mech/prompt/factor_dev/a"] == 0 and stats["mech/prompt/factor_dev/b"] == pytest.approx(0.5, abs=1e-5)
    prompts = p(torch.arange(3)).detach()
    assert stats["mech/prompt/pairwise_dist"] == pytest.approx(pairwise_distance(prompts), abs=1e-5)
    assert stats["mech/prompt/norm_ratio"] == pytest.approx(float(prompts.norm(dim=-1).mean()) / 0.5, rel=1e-4)
    assert pairwise_distance(prompts[:1]) is None


def test_peft_init_starts_near_zero_and_tensors_round_trip():
    from mvlpt.core.transfer import from_peft_tensors, to_peft_tensors

    p = DecomposedPrompt(2, (3, 5), factor_init="peft")
    assert float(p.task_matrix(torch.arange(2)).abs().max()) < 0.05
    q = from_peft_tensors(to_peft_tensors(p))
    torch.testing.assert_close(q(torch.arange(2)), p(torch.arange(2)))


def test_per_task_clipping_keeps_teachers_independent(tmp_path):
    """One task's huge gradient shrinks the other's under global clipping, not under per-task clipping."""
    grads = {}
    for scope in ("per_task", "global"):
        torch.manual_seed(0)
        model = ToyTaskModel(VanillaPrompt(2, (4, 8)))
        trainer = Trainer(model, [ToyDataset(0)], toy_collate, _cfg(clip_grad_norm=1.0, clip_grad_scope=scope), tmp_path / scope)
        params = trainer.trainable_parameters()
        trainer._clip_units = trainer._clip_groups(params, model.parameter_groups())
        g = torch.zeros_like(model.prompt.prompts)
        g[0] = 100.0
        g[1] = 0.01
        model.prompt.prompts.grad = g.clone()
        trainer._clip(params)
        grads[scope] = model.prompt.prompts.grad.clone()
    torch.testing.assert_close(grads["per_task"][1], torch.full_like(grads["per_task"][1], 0.01))
    assert float(grads["per_task"][0].norm()) == pytest.approx(1.0, rel=1e-4)
    assert float(grads["global"][1].abs().max()) < 0.001


def test_distillation_shares_are_logged(tmp_path):
    torch.manual_seed(0)
    teacher = ToyTaskModel(VanillaPrompt(2, (4, 8), init_std=0.3))
    student = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    Trainer(student, [ToyDataset(0), ToyDataset(1)], toy_collate,
            _cfg(max_steps=10, distill={"kl_weight": 1.0, "mse_weight": 1.0}), tmp_path, teacher=teacher).fit()
    row = [r for r in read_metrics(tmp_path) if r["split"] == "train"][-1]
    assert row["kl_loss"] > 0 and row["mse_loss"] > 0
    assert row["task_share"] + row["kl_share"] + row["mse_share"] == pytest.approx(1.0, abs=1e-4)
    assert 0 < row["mse_share"] < 1 and 0 < row["kl_share"] < 1


class CollapsedToy(ToyTaskModel):
    def chance_levels(self):
        return {"accuracy": 1 / 3}

    metric_scale = 1.0

    def diagnostics(self):
        return {"task0/class_text_cos": 0.999}


def test_a_collapsed_prompt_warns_and_strict_errors(tmp_path):
    torch.manual_seed(0)
    with pytest.warns(HealthWarning, match="collapsed"):
        out = Trainer(CollapsedToy(VanillaPrompt(1, (4, 8))), [ToyDataset(0)], toy_collate, _cfg(max_steps=5),
                      tmp_path / "warn", eval_datasets=[ToyDataset(0, n=8)]).fit()
    assert not out["health"]["ok"] and any("collapsed" in p for p in out["health"]["problems"])
    health = json.loads((tmp_path / "warn" / "health.json").read_text())
    assert health["ok"] is False
    with pytest.raises(HealthCheckError, match="collapsed"):
        Trainer(CollapsedToy(VanillaPrompt(1, (4, 8))), [ToyDataset(0)], toy_collate,
                _cfg(max_steps=5, health={"strict": True}), tmp_path / "strict", eval_datasets=[ToyDataset(0, n=8)]).fit()
    # a later stage consuming the run: warning, or an error when strict
    with pytest.warns(HealthWarning, match="teacher run"):
        assert check_consumed_run(tmp_path / "warn", "teacher run", strict=False)
    with pytest.raises(HealthCheckError):
        check_consumed_run(tmp_path / "warn" / "checkpoints" / "best", "teacher run", strict=True)


def test_health_problems_by_rule():
    cfg = HealthConfig()
    assert find_problems({"t/accuracy": 34.0}, {"t/accuracy": 33.3}, 100, {}, {}, cfg)  # at chance
    assert not find_problems({"t/accuracy": 60.0}, {"t/accuracy": 33.3}, 100, {}, {}, cfg)
    # majority share counts as chance (a prompt predicting one label)
    assert find_problems({"t/accuracy": 0.55, "t/majority": 0.55}, {"t/accuracy": 0.5}, 1, {}, {}, cfg)
    assert find_problems({}, {}, 100, {}, {"mech/prompt/norm_ratio": 7.0}, cfg)
    assert not find_problems({}, {}, 100, {"t/class_text_cos": 0.9}, {"mech/prompt/norm_ratio": 2.0}, cfg)
