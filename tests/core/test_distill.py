import math

import pytest
import torch

from mvlpt.core import kl_distillation, mse_distillation
from mvlpt.core.errors import ShapeMismatchError


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def test_kl_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    tau = 2.0
    expected = 0.0
    for srow, trow in zip(s.tolist(), t.tolist()):
        ps, pt = _softmax([x / tau for x in srow]), _softmax([x / tau for x in trow])
        expected += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    expected = expected / 2 * tau**2
    assert kl_distillation(s, t, temperature=tau).item() == pytest.approx(expected, rel=1e-6)
    assert kl_distillation(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_mask_excludes_other_tasks_classes():
    s = torch.tensor([[1.0, 2.0, 50.0, -7.0]])
    t = torch.tensor([[2.0, 0.0, -50.0, 9.0]])
    mask = torch.tensor([[True, True, False, False]])
    ps, pt = _softmax([1.0, 2.0]), _softmax([2.0, 0.0])
    expected = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    assert kl_distillation(s, t, mask=mask).item() == pytest.approx(expected, rel=1e-6)


def test_mse_with_and_without_mask():
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [9.0, 9.0]]])
    t = torch.zeros_like(s)
    assert mse_distillation(s, t).item() == pytest.approx((1 + 4 + 9 + 16 + 0 + 0 + 81 + 81) / 8)
    mask = torch.tensor([[True, True], [True, False]])
    assert mse_distillation(s, t, mask).item() == pytest.approx((1 + 4 + 9 + 16 + 0 + 0) / 6)


def test_distillation_shape_errors():
    with pytest.raises(ShapeMismatchError, match=r"student has shape \(2, 3\) but teacher has \(2, 4\)"):
        kl_distillation(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ShapeMismatchError, match="hidden mask"):
        mse_distillation(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))
