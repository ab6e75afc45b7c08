"""The ``similar`` pretraining task labelled by a sentence encoder: embeddings are pooled and cached,
labels follow the encoder's cosine, pairs are seeded and balanced, errors name the bad key, and
``prepare`` adds the task (made from corpus sentences only) to the supervised part. A tiny BERT
built from a config stands in for all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.pretrain import distilled

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5_v23.yaml"


def _clustered(n_clusters: int = 4, per: int = 30, dim: int = 16, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_clusters, dim, generator=g), dim=-1)
    emb = torch.cat([centres[c] + 0.3 * torch.randn(per, dim, generator=g) for c in range(n_clusters)])
    return [f"c{i // per} s{i}" for i in range(n_clusters * per)], torch.nn.functional.normalize(emb, dim=-1)


def test_embeddings_are_mean_pooled_unit_vectors_and_cached(tiny_encoder: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    texts = ["river garden winter .", "market engine silver forest .", "river garden winter ."]
    emb = distilled.encode_sentences(tiny_encoder, texts, batch_size=2)
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(emb[0], emb[2], atol=1e-5) and not torch.allclose(emb[0], emb[1], atol=1e-3)
    # padding must not change a text's embedding (the mask is applied in the pooling)
    alone = distilled.encode_sentences(tiny_encoder, texts[:1])
    assert torch.allclose(alone[0], emb[0], atol=1e-5)
    cached = distilled.cached_embeddings(tiny_encoder, texts, tmp_path)
    files = list(tmp_path.glob("embeddings_*.safetensors"))
    assert len(files) == 1 and torch.allclose(cached, emb, atol=1e-6)
    # a second call reads the cache and never runs the encoder; other texts are embedded anew
    monkeypatch.setattr(distilled, "encode_sentences", lambda *a, **k: pytest.fail("embedded again"))
    assert torch.equal(distilled.cached_embeddings(tiny_encoder, texts, tmp_path), cached)
    with pytest.raises(pytest.fail.Exception):
        distilled.cached_embeddings(tiny_encoder, texts[:2], tmp_path)


def test_neighbours_exclude_self_and_are_nearest():
    _, emb = _clustered()
    nn_idx = distilled.neighbours(emb, 5, chunk=7)
    assert nn_idx.shape == (len(emb), 5)
    assert not (nn_idx == torch.arange(len(emb)).unsqueeze(1)).any()
    sim = emb @ emb.T
    sim.fill_diagonal_(-2)
    assert torch.equal(nn_idx[:, 0], sim.argmax(1))


def test_labels_follow_the_encoder_cosine_and_are_seeded_and_balanced():
    texts, emb = _clustered()
    pairs, stats = distilled.similarity_pairs(texts, emb, 400, seed=0, k=10, margin=0.05)
    again, _ = distilled.similarity_pairs(texts, emb, 400, seed=0, k=10, margin=0.05)
    other, _ = distilled.similarity_pairs(texts, emb, 400, seed=1, k=10, margin=0.05)
    assert pairs == again and pairs != other and len(pairs) == 400
    assert 0.35 <= stats["yes_share"] <= 0.65
    index = {t: i for i, t in enumerate(texts)}
    same_cluster = {"yes": [], "no": []}
    for x, y in pairs:
        assert x.startswith("similar sentence1: ") and y in ("yes", "no")
        a, b = x[len("similar sentence1: "):].split(" sentence2: ")
        cos = float(emb[index[a]] @ emb[index[b]])
        assert abs(cos - stats["threshold"]) >= 0.05
        assert (cos > stats["threshold"]) == (y == "yes")
        same_cluster[y].append(a.split()[0] == b.split()[0])
    # the label carries the structure the encoder sees: close pairs come from one cluster
    assert sum(same_cluster["yes"]) / len(same_cluster["yes"]) > 0.9
    assert sum(same_cluster["no"]) / len(same_cluster["no"]) < 0.5


def test_errors_name_the_problem(tmp_path: Path):
    texts, emb = _clustered()
    with pytest.raises(ConfigError, match="distill_encoder"):
        distilled.resolve_encoder_dir(str(tmp_path))
    with pytest.raises(ConfigError, match="3 sentences"):
        distilled.similarity_pairs(texts[:2], emb[:2], 10, seed=0)
    with pytest.raises(ConfigError, match="margin"):
        distilled.similarity_pairs(texts, emb, 10, seed=0, margin=0.7)
    with pytest.raises(ConfigError, match="similar"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.supervised_weights={sst2: 0.5, qnli: 0.2, mnli: 0.2, qqp: 0.1}"])
    with pytest.raises(ConfigError, match="distill_rows"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.distill_rows=2"])


def test_prepare_adds_the_similar_task_from_corpus_sentences(tiny_encoder: Path, tmp_path: Path, sst2_root: list[str]):
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, sst2_root + [
        f"data.distill_encoder={tiny_encoder}", "data.distill_sentences=80", "data.distill_rows=60", "data.distill_margin=0.0",
        "data.supervised_weights={sst2: 0.5, similar: 0.5}",
        "data.vocab_size=60", "data.extra_ids=10", "data.chunk_length=32", "data.eval_fraction=0.1", f"run_dir={tmp_path / 'run'}"])
    tok, train_sets, eval_sets, stats = pretrain.prepare(cfg)
    task = stats["supervised_tasks"]["similar"]
    assert task["train"] + task["eval"] == 60 and task["file"].startswith("distilled:similar")
    assert stats["distill"]["sentences"] == 80 and stats["distill"]["encoder"] == str(tiny_encoder)
    assert "similar" in {t for t, _, _ in stats["rank_eval"].values()}
    corpus = {json.loads(line)["text_a"] for line in (tmp_path / "glue/SST-2/train.jsonl").read_text().splitlines()}
    for x, _ in train_sets[1].pairs + eval_sets[1].pairs:
        if x.startswith("similar "):
            a, b = x[len("similar sentence1: "):].split(" sentence2: ")
            assert a in corpus and b in corpus and a != b
    assert list((tmp_path / "run" / "distill").glob("embeddings_*.safetensors"))
    mix = pretrain.mixture_record(cfg, stats)
    assert mix["supervised"]["tasks"]["similar"]["rate"] == pytest.approx(0.8 * 0.5, rel=0.05)


def test_config_refuses_embedding_distillation_without_an_encoder_or_per_example_loss():
    with pytest.raises(ConfigError, match="distill_embed_weight"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.distill_encoder=", "data.distill_embed_weight=0.5",
                                                        "data.supervised_weights={sst2: 0.3, qnli: 0.3, mnli: 0.2, qqp: 0.2}"])
    with pytest.raises(ConfigError, match="loss_average"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.distill_embed_weight=0.5", "loss_average=token"])


def test_embedding_rows_collate_beside_text_rows_and_their_loss_pulls_the_encoder_to_the_teacher():
    from text_mpt.pretrain.distilled import SentenceEmbeddingDataset

    torch.manual_seed(0)
    t5 = pretrain.build_t5(pretrain.T5ModelConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16), 50)
    model = pretrain.T5PretrainModel(t5, "example", embed_dim=8)

    class Tok:
        eos_token_id = 1

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[3 + (hash(w) % 40) for w in t.split()] for t in texts]}

    targets = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    ds = SentenceEmbeddingDataset(Tok(), [f"s{i} w{i} x{i % 2}" for i in range(6)], targets, order=[0, 1, 2, 3, 4, 5, 0])
    assert len(ds) == 7 and torch.equal(ds[6]["target"], targets[0]) and ds[6]["labels"] == [1]
    rows = [{**ds[i], "task_id": 2, "index": i} for i in range(6)]
    text_row = {"input_ids": [5, 6, 1], "labels": [7, 1], "task_id": 1, "index": 0}
    batch = pretrain.collate(rows + [text_row])
    assert batch["target"].shape == (7, 8) and batch["target_mask"].tolist() == [True] * 6 + [False]
    assert torch.equal(batch["target"][6], torch.zeros(8))
    opt = torch.optim.Adam([p for m in model.prompt_modules().values() for p in m.parameters()], lr=3e-3)
    first = model.step(batch)
    for _ in range(60):
        opt.zero_grad()
        model.step(batch).loss.backward()
        opt.step()
    last = model.step(batch)
    # the mechanism is active: the held rows' cosine to their targets rises well above where it started
    assert last.metrics["embed_cos"] > first.metrics["embed_cos"] + 0.3
    model.eval()
    records = model.predict(batch)
    assert sum("embed_cos" in r for r in records) == 6
    assert model.compute_metrics(records)["embed_cos"] == pytest.approx(last.metrics["embed_cos"], abs=0.05)
    # the head is saved and restored with the T5 (resume), and is not part of the T5 (export)
    state = model.trainable_state_dict()
    assert {"embed_head.weight", "embed_head.bias"} <= set(state) and not any("embed_head" in k for k in t5.state_dict())
    fresh = pretrain.T5PretrainModel(pretrain.build_t5(pretrain.T5ModelConfig(d_model=32, d_ff=64, num_layers=1,
                                                                              num_heads=2, d_kv=16), 50, seed=1),
                                     "example", embed_dim=8)
    fresh.load_trainable_state_dict(state)
    assert torch.equal(fresh.embed_head.weight, model.embed_head.weight)


def test_prepare_adds_a_sentence_embedding_part_at_its_rate(tiny_encoder: Path, tmp_path: Path, sst2_root: list[str]):
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, sst2_root + [
        f"data.distill_encoder={tiny_encoder}", "data.distill_sentences=80", "data.distill_rows=60", "data.distill_margin=0.0",
        "data.distill_embed_weight=1.0", "data.supervised_weights={sst2: 0.5, similar: 0.5}",
        "data.vocab_size=60", "data.extra_ids=10", "data.chunk_length=32", "data.eval_fraction=0.1", f"run_dir={tmp_path / 'run'}"])
    tok, train_sets, eval_sets, stats = pretrain.prepare(cfg)
    assert len(train_sets) == len(eval_sets) == 3
    emb = stats["embedding"]
    assert emb["sentences_train"] + emb["sentences_eval"] == 80 and emb["dim"] == 16
    assert len(train_sets[2]) == emb["sampled"] == stats["chunks_train"]
    assert train_sets[2][0]["target"].shape == (16,)
    mix = pretrain.mixture_record(cfg, stats)
    # span corruption n, supervised 4n (share 0.8 of those two), embedding n: rates 1/6, 4/6, 1/6
    assert mix["sentence_embedding"]["rate"] == pytest.approx(1 / 6, rel=0.05)
