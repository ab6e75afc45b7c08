import pytest
import torch

from mvlpt.core import DecomposedPrompt, from_peft_tensors, init_from_source, to_peft_tensors
from mvlpt.core.errors import ShapeMismatchError


def _trained_source(tasks=3, shape=(6, 10), rank=2):
    torch.manual_seed(1)
    src = DecomposedPrompt(tasks, shape, rank=rank)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    return src


def test_init_mean_of_source_factors():
    src = _trained_source()
    tgt = DecomposedPrompt(2, (6, 10), rank=2)
    init_from_source(tgt, src.state_dict(), mode="mean")
    torch.testing.assert_close(tgt.shared, src.shared)
    for k in range(2):
        torch.testing.assert_close(tgt.task_u[k], src.task_u.mean(0))
        torch.testing.assert_close(tgt.task_v[k], src.task_v.mean(0))


def test_init_exact_source_task_reproduces_its_prompt():
    src = _trained_source()
    tgt = DecomposedPrompt(1, (6, 10), rank=2)
    init_from_source(tgt, src.state_dict(), mode="task", source_task=2)
    torch.testing.assert_close(tgt(0), src(2))


def test_init_shared_only_gives_shared_prompt():
    src = _trained_source()
    tgt = DecomposedPrompt(1, (6, 10), rank=2)
    init_from_source(tgt, src.state_dict(), mode="shared_only")
    torch.testing.assert_close(tgt(0)[0], src.shared)


def test_source_of_another_shape_is_refused():
    src = _trained_source(shape=(6, 10))
    with pytest.raises(ShapeMismatchError, match=r"shape \(6, 10\).*expects \(6, 12\)"):
        init_from_source(DecomposedPrompt(1, (6, 12), rank=2), src.state_dict())
    with pytest.raises(ShapeMismatchError, match="task_u"):
        init_from_source(DecomposedPrompt(1, (6, 10), rank=1), src.state_dict())
    with pytest.raises(ValueError, match="out of range"):
        init_from_source(DecomposedPrompt(1, (6, 10), rank=2), src.state_dict(), mode="task", source_task=7)


def _peft_embedding(num_tasks, l, d, r):
    peft = pytest.importorskip("peft")
    from peft.tuners.multitask_prompt_tuning.model import MultitaskPromptEmbedding

    cfg = peft.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=l, token_dim=d, num_tasks=num_tasks,
                                           num_ranks=r, num_transformer_submodules=1, num_attention_heads=2, num_layers=1)
    word = torch.nn.Embedding(50, d)
    return MultitaskPromptEmbedding(cfg, word)


@pytest.mark.parametrize("rank", [1, 2])
def test_peft_parity_and_conversion(rank):
    """PEFT's MultitaskPromptEmbedding and ours give identical prompts from the same weights."""
    ours = _trained_source(tasks=3, shape=(5, 8), rank=rank)
    peft_emb = _peft_embedding(3, 5, 8, rank)
    tensors = to_peft_tensors(ours)
    with torch.no_grad():
        peft_emb.embedding.weight.copy_(tensors["prompt_embeddings"])
        peft_emb.prefix_task_cols.copy_(tensors["prefix_task_cols"])
        peft_emb.prefix_task_rows.copy_(tensors["prefix_task_rows"])
    ids = torch.tensor([2, 0, 1, 2])
    indices = torch.arange(5).unsqueeze(0).expand(4, 5)
    torch.testing.assert_close(peft_emb(indices, ids), ours(ids))
    # and back: PEFT tensors → our module
    back = from_peft_tensors({
        "prompt_embeddings": peft_emb.embedding.weight.detach(),
        "prefix_task_cols": peft_emb.prefix_task_cols.detach(),
        "prefix_task_rows": peft_emb.prefix_task_rows.detach(),
    })
    torch.testing.assert_close(back(ids), ours(ids))


def test_peft_conversion_refuses_stacks_and_bad_tensors():
    with pytest.raises(ShapeMismatchError, match="stack"):
        to_peft_tensors(DecomposedPrompt(2, (2, 3, 4)))
    with pytest.raises(ShapeMismatchError, match="inconsistent"):
        from_peft_tensors({"prompt_embeddings": torch.zeros(5, 8), "prefix_task_cols": torch.zeros(2, 4, 1),
                           "prefix_task_rows": torch.zeros(2, 1, 8)})
