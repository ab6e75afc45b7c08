"""tiny-t5 v2 pretraining mixture: span corruption + supervised GLUE tasks, and no target-task data anywhere."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.pretrain.data import (ALLOWED_SUPERVISED, TARGET_DIRS, TARGET_TASKS, SupervisedDataset, is_target_file,
                                    read_supervised, read_texts, record_text, target_strings)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5.yaml"
LEAK = "This sentence belongs to a target task and must never be pretrained on."


@pytest.mark.parametrize("d", TARGET_DIRS)
def test_target_files_are_refused_in_any_case(d: str):
    for rel in (f"{d}/train.jsonl", f"{d.lower()}/train.jsonl", f"{d.upper()}/train.jsonl"):
        assert is_target_file(rel)
        with pytest.raises(ConfigError, match="target task"):
            load_config(pretrain.T5PretrainConfig, CONFIG, [f"data.files=[glue/MNLI/train.jsonl, {rel}]"])


def test_non_training_splits_and_target_supervision_are_refused():
    with pytest.raises(ConfigError, match="training split"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.files=[glue/MNLI/dev.jsonl]"])
    for task in (*TARGET_TASKS, "sg_rte", "RTE"):
        with pytest.raises(ConfigError, match="target task"):
            load_config(pretrain.T5PretrainConfig, CONFIG, [f"data.supervised=[sst2, {task}]"])
    with pytest.raises(ConfigError, match="not allowed"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.supervised=[copa]"])


def test_shipped_recipe_mixes_only_allowed_training_files():
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, [])
    assert cfg.data.files and all(f.endswith("/train.jsonl") and not is_target_file(f) for f in cfg.data.files)
    assert not any(t.split("/")[1].lower() in f.lower() for f in cfg.data.files for t in TARGET_DIRS)
    assert cfg.data.supervised and set(cfg.data.supervised) <= set(ALLOWED_SUPERVISED)


def test_supervised_examples_are_task_prefix_input_to_gold_verbalizer(tmp_path: Path, write_jsonl):
    write_jsonl(tmp_path / "glue/SST-2/train.jsonl", [{"idx": 0, "text_a": "a gorgeous film", "text_b": None, "label": "1"},
                                                 {"idx": 1, "text_a": "dull and flat", "text_b": None, "label": "0"}])
    write_jsonl(tmp_path / "glue/MNLI/train.jsonl", [{"idx": 0, "text_a": "A man sleeps.", "text_b": "A man runs.",
                                                 "label": "2", "label_name": "contradiction"}])
    write_jsonl(tmp_path / "glue/STS-B/train.jsonl", [{"idx": 0, "text_a": "A cat.", "text_b": "A cat sits.", "label": "3.2"}])
    pairs = read_supervised(tmp_path, ["sst2", "mnli", "stsb"])
    assert pairs == {"sst2": [("sst2 sentence: a gorgeous film", "positive"), ("sst2 sentence: dull and flat", "negative")],
                     "mnli": [("mnli premise: A man sleeps. hypothesis: A man runs.", "no")],
                     "stsb": [("stsb sentence1: A cat. sentence2: A cat sits.", "3.2")]}

    class WordTok:  # one id per word, EOS = 1
        eos_token_id = 1

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[10 + len(w) for w in t.split()] for t in texts]}

    ds = SupervisedDataset(WordTok(), pairs["sst2"] + pairs["mnli"], max_input_length=4, max_target_length=16)
    # "sst2 sentence: a gorgeous film" → "sst2" "sentence:" "a" + EOS (truncated to 4); "positive" + EOS
    assert ds[0] == {"input_ids": [14, 19, 11, 1], "labels": [18, 1]}
    assert ds[2] == {"input_ids": [14, 18, 11, 1], "labels": [12, 1]}  # "mnli" "premise:" "A" + EOS; "no" + EOS


def test_target_text_is_dropped_from_corpus_supervision_and_tokenizer(tmp_path: Path, write_jsonl):
    rng = random.Random(0)
    words = "the a cat dog sat ran on under mat hill sun rain bird song long short".split()
    sent = lambda: " ".join(rng.choices(words, k=12))
    write_jsonl(tmp_path / "glue/RTE/dev.jsonl", [{"idx": 0, "text_a": LEAK, "text_b": "Zebra quokka axolotl.", "label": "0"}])
    sts = [{"idx": i, "text_a": sent(), "text_b": sent(), "label": "2.0"} for i in range(200)]
    sts[7]["text_b"] = LEAK                                           # a whole target field
    sts[9]["text_a"] = "yeah well " + LEAK.lower().rstrip(".") + " i think"  # a target sentence quoted inside a longer one
    write_jsonl(tmp_path / "glue/STS-B/train.jsonl", sts)
    write_jsonl(tmp_path / "glue/SST-2/train.jsonl", [{"idx": i, "text_a": sent(), "label": str(i % 2)} for i in range(200)])
    assert tuple(LEAK.lower().rstrip(".").split()[:8]) in target_strings(tmp_path)
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, [
        f"data.root={tmp_path}", "data.files=[glue/STS-B/train.jsonl, glue/SST-2/train.jsonl]", "data.supervised=[stsb, sst2]", "data.supervised_weights={}",
        "data.vocab_size=60", "data.extra_ids=10", "data.chunk_length=32", "data.eval_fraction=0.1", f"run_dir={tmp_path / 'run'}"])
    tok, train_sets, eval_sets, stats = pretrain.prepare(cfg)
    assert stats["dropped_overlapping_targets"] == {"glue/STS-B/train.jsonl": 2, "glue/SST-2/train.jsonl": 0}
    assert stats["supervised_tasks"]["stsb"]["dropped_overlapping_targets"] == 2
    assert stats["supervised_train"] + stats["supervised_eval"] == 198 + 200
    seen = [tok.decode(c) for ds in (train_sets[0], eval_sets[0]) for c in ds.chunks]
    seen += [x for ds in (train_sets[1], eval_sets[1]) for p in ds.pairs for x in p]
    blob = " ".join(seen)
    assert "target" not in blob and "pretrained" not in blob and "quokka" not in blob
    assert any(p[0].startswith("stsb sentence1: ") for p in train_sets[1].pairs)
    assert not any("belongs to a target" in x.lower() for ds in (train_sets[1], eval_sets[1]) for p in ds.pairs for x in p)
    # the raw corpus without the filter would hold it; with it (as prepare reads it) it does not
    assert sum("belongs to a target" in t.lower() for t in read_texts(tmp_path, cfg.data.files)) == 2
    assert not any("belongs to a target" in t.lower() for t in read_texts(tmp_path, cfg.data.files, target_strings(tmp_path)))
    # the tokenizer never saw the target text: its words are not pieces
    assert not {"▁target", "▁pretrained", "▁belongs"} & set(tok.get_vocab())


def test_shared_corpus_holds_no_target_text(shared_data: Path):
    """Independent of the n-gram filter: no long target-task string is a substring of the corpus."""
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, [])
    targets = target_strings(shared_data)
    corpus = "\n".join(read_texts(shared_data, cfg.data.files, targets))
    sup = read_supervised(shared_data, cfg.data.supervised, targets)
    corpus += "\n" + "\n".join(x for pairs in sup.values() for p in pairs for x in p)
    rng = random.Random(0)
    for d in TARGET_DIRS:
        strings = sorted({s.strip() for f in sorted((shared_data / d).glob("*.jsonl")) for line in f.open()
                          for s in record_text(json.loads(line)) if len(s.strip()) >= 40})
        assert strings, d
        sample = rng.sample(strings, min(150, len(strings)))
        leaked = [s for s in sample if s in corpus]
        assert not leaked, (d, leaked[:3])


def test_supervised_share_and_weights_set_the_sampling_rates():
    spans = {"sst2": (0, 100), "qnli": (100, 50), "mnli": (150, 10)}
    order, quotas = pretrain.weighted_order(spans, {"sst2": 0.5, "qnli": 0.3, "mnli": 0.2}, 0.8, 1000, seed=0)
    assert quotas == {"sst2": 2000, "qnli": 1200, "mnli": 800} and len(order) == 4000
    # each task's items are its own rows, cycled: every row of a task appears before any repeats
    assert set(order[:2000]) == set(range(100)) and [order[:2000].count(i) for i in range(100)] == [20] * 100
    assert set(order[2000:3200]) == set(range(100, 150)) and set(order[3200:]) == set(range(150, 160))
    assert order[:100] != list(range(100))  # shuffled
    # no weights: examples-proportional
    _, q = pretrain.weighted_order(spans, {}, 0.5, 160, seed=0)
    assert q == {"sst2": 100, "qnli": 50, "mnli": 10}
    # the mixture record reports the rates the proportional sampler will use
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, [])
    assert cfg.train.sampling.strategy == "proportional" and cfg.data.supervised_share == pytest.approx(0.8)
    rows = {t: {"file": f"glue/{t}/train.jsonl", "train": n, "eval": 1, "dropped_overlapping_targets": 0, "sampled": quotas[t]}
            for t, (_, n) in spans.items()}
    stats = {"chunks_train": 1000, "supervised_train": 160, "supervised_sampled": len(order), "supervised_tasks": rows,
             "texts": 1, "target_strings": 0, "dropped_overlapping_targets": {}}
    mix = pretrain.mixture_record(cfg, stats)
    assert mix["supervised"]["rate"] == pytest.approx(0.8) and mix["span_corruption"]["rate"] == pytest.approx(0.2)
    assert {t: round(v["rate"], 6) for t, v in mix["supervised"]["tasks"].items()} == {"sst2": 0.4, "qnli": 0.24, "mnli": 0.16}


def test_supervised_share_config_checks():
    with pytest.raises(ConfigError, match="proportional"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["train.sampling.strategy=uniform"])
    with pytest.raises(ConfigError, match="lacks a weight"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.supervised=[sst2, cola]"])
    with pytest.raises(ConfigError, match="supervised_share"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.supervised_share=1.0"])
    with pytest.raises(ConfigError, match="loss_average"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["loss_average=batch"])
