"""The frozen image-feature cache: exact, shared between views of one backbone, never used where
it could change a result (gradients into the tower, training mode, changed weights)."""

from __future__ import annotations

import torch

from mvlpt.clip.feature_cache import cache_of
from mvlpt.clip.prompt_config import CLIPPromptConfig
from mvlpt.clip.task_model import CLIPTaskModel
from mvlpt.clip.tasks import TaskInfo
from mvlpt.clip.vision_tower import VisionTower
from mvlpt.core.stages import PromptConfig

from clip_helpers import make_batch

CLASSES = ["cat", "dog", "car"]


def coop_model(backbone):
    model, tok, _ = backbone
    return CLIPTaskModel(model, tok, [TaskInfo("t", "classification", CLASSES)],
                         CLIPPromptConfig(method="coop", text=PromptConfig(length=4)), "single")


def test_cached_features_equal_the_forward(backbone):
    model, _, _ = backbone
    tower = VisionTower(model)
    model.eval()
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tower._encode(x, None, False)
        cache = cache_of(model.visual)
        before = cache.hits
        first = tower.encode(x)
        again = VisionTower(model).encode(x[[4, 0, 2]])  # another view, a subset in another order: all hits
    torch.testing.assert_close(first, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(again, ref[[4, 0, 2]], atol=1e-6, rtol=0)
    assert cache.hits - before == 3


def test_coop_loss_and_gradients_unchanged_by_the_cache(backbone):
    m = coop_model(backbone).train()
    batch = make_batch([0, 0, 0, 0], [0, 1, 2, 1], seed=3)
    cache_of(backbone[0].visual).rows.clear()
    grads, losses = [], []
    for _ in range(2):  # second pass: features from the cache
        m.zero_grad()
        out = m.step(batch)
        out.loss.backward()
        losses.append(out.loss.detach())
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert cache_of(backbone[0].visual).hits >= 4
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=0)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_not_used_with_gradients_into_the_tower_or_in_training_mode(backbone):
    model, _, _ = backbone
    tower, cache = VisionTower(model), cache_of(model.visual)
    x = torch.randn(2, 3, 32, 32)
    p = next(model.visual.parameters())
    p.requires_grad_(True)
    try:
        n = len(cache.rows)
        tower.encode(x)
        assert len(cache.rows) == n
    finally:
        p.requires_grad_(False)
    model.visual.train()
    try:
        with torch.no_grad():
            tower.encode(x)
        assert len(cache.rows) == n
    finally:
        model.visual.eval()


def test_a_weight_change_empties_the_cache(backbone):
    model, _, _ = backbone
    tower, cache = VisionTower(model), cache_of(model.visual)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a = tower.encode(x)
        w = model.visual.proj
        w.mul_(2.0)
        misses = cache.misses
        b = tower.encode(x)
        assert cache.misses == misses + 2  # recomputed, not served from before the change
        w.div_(2.0)
    torch.testing.assert_close(b, a * 2.0, atol=1e-5, rtol=1e-5)


def test_a_row_does_not_depend_on_what_was_cached_before(backbone):
    """A sweep's cell must equal its standalone run: the rows a batch still misses depend on earlier runs,
    and a 1-row forward can round differently from a many-row one (seen with tiny-clip on CPU)."""
    model, _, _ = backbone
    model.eval()
    tower, cache = VisionTower(model), cache_of(model.visual)
    x = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        cache.rows.clear()
        fresh = tower.encode(x)                 # every row missing: one request of 40
        for history in ([], list(range(39)), list(range(0, 40, 2)), [7]):
            cache.rows.clear()
            if history:
                tower.encode(x[history].clone())   # an earlier run cached these rows
            assert torch.equal(tower.encode(x.clone()), fresh), history


def test_canonical_encode_is_row_wise_and_matches_the_forward(backbone):
    from mvlpt.clip.feature_cache import canonical_encode

    model, _, _ = backbone
    model.eval()
    tower = VisionTower(model)
    x = torch.randn(19, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    fn = lambda t: tower._encode(t, None, False)  # noqa: E731
    with torch.no_grad():
        whole = canonical_encode(fn, x, chunk=8)
        assert torch.equal(canonical_encode(fn, x[[18]], chunk=8), whole[[18]])
        assert torch.equal(canonical_encode(fn, x[3:12], chunk=8), whole[3:12])
        torch.testing.assert_close(whole, fn(x), atol=1e-5, rtol=0)
