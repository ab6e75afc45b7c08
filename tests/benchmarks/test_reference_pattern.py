"""The benchmark's CoOp/MVLPT reference pattern computes the same logits as the CLIP head (fp32, same prompts),
so the throughput ratio compares two ways of computing one function."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    cs = _load("clip_setup")
    backbone, tok = cs.build_backbone(cs.SIZES["tiny"], seed=0)
    tasks = cs.build_tasks(tok, [("a", 5), ("b", 3), ("c", 4)], seed=0)
    batch = cs.make_batches(tasks, [0.4, 0.3, 0.3], 1, 6, 32, grouped=False, seed=0)[0]
    return cs, backbone, tok, tasks, batch




@pytest.mark.parametrize("key", ["mcoop", "mvpt"])
def test_reference_matches_the_head(setup, key):
    cs, backbone, tok, tasks, batch = setup
    method = cs.METHODS[key]
    ref = cs.build_reference(cs.reference_backbone(backbone), tok, tasks, method, torch.float32).eval()
    ours = cs.build_ours(backbone, tok, tasks, method, "teachers").eval()  # a vanilla prompt per task
    with torch.no_grad():  # give every task the reference's single shared prompt set
        if key == "mcoop":
            text = ours.prompt_set.text_prompt.prompts
            text.copy_(ref.prompt_learner.ctx.expand_as(text))
        else:
            deep = torch.cat([ref.prompt_learner.vpt, ref.prompt_learner.vpt_deep], dim=0)
            ours.prompt_set.visual_prompt.prompts.copy_(deep.expand_as(ours.prompt_set.visual_prompt.prompts))
        ref_logits = ref(batch["images"], batch["task_ids"])
        out = ours.step(batch)
    mask = out.logit_mask
    assert mask.sum() == sum(len(tasks[k].classnames) for k in batch["task_ids"].tolist())
    torch.testing.assert_close(out.logits[mask], ref_logits[mask], rtol=1e-4, atol=1e-4)
    assert bool((ref_logits[~mask] == 0).all())  # the reference zeroes other tasks' columns (MVLPT's mask)
    loss = torch.nn.functional.cross_entropy(ref_logits.masked_fill(~mask, float("-inf")), batch["global_labels"])
    torch.testing.assert_close(out.loss, loss, rtol=1e-4, atol=1e-4)
