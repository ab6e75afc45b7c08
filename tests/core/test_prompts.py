import math

import pytest
import torch

from mvlpt.core import DecomposedPrompt, TaskIdError, VanillaPrompt
from mvlpt.core.errors import ShapeMismatchError


@pytest.mark.parametrize("shape", [(5, 8), (3, 5, 8)])
@pytest.mark.parametrize("rank", [1, 3])
def test_mixed_batch_equals_per_sample_assembly(shape, rank):
    torch.manual_seed(0)
    p = DecomposedPrompt(4, shape, rank=rank)
    ids = torch.tensor([2, 0, 3, 2, 1])
    out = p(ids)
    assert out.shape == (5, *shape)
    for b, k in enumerate(ids.tolist()):
        expected = p.shared * (p.task_u[k] @ p.task_v[k].transpose(-1, -2))
        # rank 1: one product per entry, bitwise; rank > 1: the r-term sum may be ordered
        # differently by batched and single matmul kernels (CPU-dependent), float tolerance
        tol = 0.0 if rank == 1 else 1e-6
        torch.testing.assert_close(out[b], expected, rtol=0, atol=tol)


def test_stack_has_per_layer_factors():
    p = DecomposedPrompt(2, (3, 4, 6), rank=1)
    assert p.task_u.shape == (2, 3, 4, 1) and p.task_v.shape == (2, 3, 6, 1)
    with torch.no_grad():
        p.task_u[0, 1] *= 2.0  # only layer 1 of task 0 changes
    out = p(torch.tensor([0]))[0]
    ref = p.shared * (p.task_u[0] @ p.task_v[0].transpose(-1, -2))
    torch.testing.assert_close(out, ref)


def test_int_task_id_broadcasts():
    p = DecomposedPrompt(3, (4, 8))
    assert p(1).shape == (1, 4, 8)
    torch.testing.assert_close(p(1)[0], p(torch.tensor([1]))[0])


def test_random_init_keeps_shared_prompt():
    """U Vᵀ starts near one, so the task prompt starts near P* (not near zero)."""
    for rank in (1, 4):
        p = DecomposedPrompt(3, (16, 64), rank=rank)
        m = p.task_matrix(torch.arange(3))
        assert abs(float(m.detach().mean()) - 1.0) < 0.05
        rel = (p(torch.arange(3)) - p.shared).norm() / p.shared.norm() / math.sqrt(3)
        assert rel < 0.2


def test_vanilla_prompt_independent_per_task():
    p = VanillaPrompt(3, (4, 8))
    ids = torch.tensor([2, 2, 0])
    out = p(ids)
    torch.testing.assert_close(out[0], p.prompts[2])
    torch.testing.assert_close(out[2], p.prompts[0])
    out.sum().backward()
    assert p.prompts.grad[1].abs().sum() == 0 and p.prompts.grad[2].abs().sum() > 0


def test_init_from_embeddings_tiles_text():
    emb = torch.arange(12.0).reshape(3, 4)
    p = DecomposedPrompt(2, (2, 5, 4))
    p.init_from_embeddings(emb)
    torch.testing.assert_close(p.shared[1], torch.cat([emb, emb[:2]]))
    v = VanillaPrompt(2, (5, 4))
    v.init_from_embeddings(emb, task=1)
    torch.testing.assert_close(v.prompts[1], torch.cat([emb, emb[:2]]))
    assert not torch.equal(v.prompts[0], v.prompts[1])


def test_trainable_groups_and_parameter_counts():
    p = DecomposedPrompt(4, (100, 768), rank=1)
    assert p.trainable_parameters_per_task() == {"per_task": 100 + 768, "shared": 100 * 768}
    p.set_trainable(["task_factors"])
    assert not p.shared.requires_grad and p.task_u.requires_grad
    assert p.trainable_parameters_per_task() == {"per_task": 868, "shared": 0}
    stack = DecomposedPrompt(2, (12, 16, 768), rank=2)
    assert stack.trainable_parameters_per_task()["per_task"] == 12 * (16 + 768) * 2
    with pytest.raises(KeyError, match="unknown parameter group"):
        p.set_trainable(["shard"])


@pytest.mark.parametrize(
    "ids, match",
    [
        (torch.tensor([0, 3]), "task id 3 is out of range.*0..2"),
        (torch.tensor([-1]), "task id -1 is out of range"),
        (torch.tensor([0.0, 1.0]), "integer dtype.*found torch.float32"),
        (torch.tensor([[0, 1]]), r"shape \(B,\), found shape \(1, 2\)"),
        (5, "task id 5 is out of range"),
        ("0", "int or a LongTensor"),
    ],
)
def test_bad_task_ids_raise_clear_errors(ids, match):
    p = DecomposedPrompt(3, (4, 8))
    with pytest.raises(TaskIdError, match=match):
        p(ids)
    v = VanillaPrompt(3, (4, 8))
    with pytest.raises(TaskIdError):
        v(ids)


def test_bad_shapes():
    with pytest.raises(ShapeMismatchError, match=r"\(l, d\) or \(layers, l, d\)"):
        DecomposedPrompt(2, (4,))
    with pytest.raises(ValueError, match="rank"):
        DecomposedPrompt(2, (4, 8), rank=0)
