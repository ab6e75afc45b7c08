"""Evaluation without training (``mvlpt.core.evaluation.evaluate``): the loop's evaluation, minus the loop."""

import torch
from torch.utils.data import Dataset

from toy import ToyDataset, ToyTaskModel, toy_collate

from mvlpt.core import DecomposedPrompt, Trainer, TrainConfig, evaluate, freeze, from_dict


def _cfg(**kw):
    base = {"max_steps": 10, "batch_size": 16, "eval_batch_size": 7, "log_every": 5, "progress": False,
            "optim": {"name": "adamw", "lr": 0.05}, "tensorboard": False}
    base.update(kw)
    return from_dict(TrainConfig, base)


class NeverRead(Dataset):
    """A training set that fails the test when any sample is drawn."""

    def __init__(self, n: int = 64):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        raise AssertionError(f"training sample {i} drawn during evaluation")


def _model():
    torch.manual_seed(0)
    prompt = DecomposedPrompt(2, (4, 8))
    with torch.no_grad():  # a prompt that changes the predictions (not the all-ones start)
        prompt.task_u.normal_(0, 0.5)
        prompt.shared.normal_(0, 0.1)
    return ToyTaskModel(prompt)


def test_core_evaluate_equals_trainer_evaluate_and_never_draws_training_data(tmp_path):
    evals = [ToyDataset(0, n=40), ToyDataset(1, n=23)]
    model = _model()
    trainer = Trainer(model, [NeverRead(), NeverRead()], toy_collate, _cfg(), tmp_path, eval_datasets=evals)
    via_trainer = trainer.evaluate()
    direct = evaluate(model, evals, toy_collate, _cfg())
    assert via_trainer == direct
    assert direct["n"] == 63.0  # every evaluation example once (uneven last batches included)
    assert 0.0 <= direct["accuracy"] <= 1.0
    # a dataset list given explicitly, and another model evaluated with the trainer's settings
    assert trainer.evaluate(evals) == direct
    other = _model()
    assert trainer.evaluate(evals, model=other) == evaluate(other, evals, toy_collate, _cfg())
    assert not (tmp_path / "checkpoints").exists()  # evaluating trains nothing, saves nothing


def test_core_evaluate_keeps_the_training_mode_and_handles_no_data():
    model = _model().train()
    evaluate(model, [ToyDataset(0, n=10)], toy_collate, _cfg())
    assert model.training and model.prompt.training and not model.backbone.training
    model.eval()
    evaluate(model, [ToyDataset(0, n=10)], toy_collate, _cfg())
    assert not model.training
    assert evaluate(model, [], toy_collate, _cfg()) == {}


def test_freeze_stops_gradients_and_sets_eval_mode_unless_asked_not_to():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5)).train()
    assert freeze(net) is net
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    other = torch.nn.Linear(2, 2).train()
    freeze(other, eval_mode=False)
    assert not any(p.requires_grad for p in other.parameters()) and other.training
