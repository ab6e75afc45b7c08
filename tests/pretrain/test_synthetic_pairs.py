"""Synthetic sentence-pair tasks of tiny-t5 pretraining: seeded, balanced, answerable only from both
segments, made from corpus sentences only, and wired into the supervised part of the mixture."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.pretrain.synthetic import SYNTHETIC_TASKS, corpus_sentences, synthetic_pairs

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5_v22.yaml"
WORDS = ("river garden winter yellow market engine silver forest lantern pocket quiet window thunder "
         "marble pencil harbor candle meadow rocket violet").split()


def _sentences(n: int = 60, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.sample(WORDS, rng.randint(9, 14)) for _ in range(n)]


def test_corpus_sentences_split_filter_and_dedupe():
    texts = ["One two three. " + "a b c d e f g h i j." + " A B C D E F G H I J!", "a b c d e f g h i j."]
    assert corpus_sentences(texts, min_words=8, max_words=12) == [list("abcdefghi") + ["j."], list("ABCDEFGHI") + ["J!"]]


@pytest.mark.parametrize("task", sorted(SYNTHETIC_TASKS))
def test_synthetic_task_is_seeded_balanced_and_prefixed(task: str):
    pool = _sentences()
    rows = synthetic_pairs(task, pool, 400, seed=3)
    assert rows == synthetic_pairs(task, pool, 400, seed=3)
    assert rows != synthetic_pairs(task, pool, 400, seed=4)
    answers = [a for _, a in rows]
    assert set(answers) == {"yes", "no"} and 0.4 < answers.count("yes") / len(answers) < 0.6
    assert all(x.startswith(f"{task} ") for x, _ in rows)


@pytest.mark.parametrize("task", sorted(SYNTHETIC_TASKS))
def test_answer_needs_both_segments(task: str):
    """Neither segment alone gives the answer: each second segment occurs with ``yes`` and ``no``
    across first segments, and every word of the inputs comes from the corpus (no answer cue words)."""
    pool = _sentences()
    rows = synthetic_pairs(task, pool, 2000, seed=0)
    marker = {"overlap": " sentence: ", "entail": " hypothesis: ", "paraphrase": " sentence2: "}[task]
    first_words = {a: set() for a in ("yes", "no")}
    for x, a in rows:
        first, second = x.split(marker)
        first_words[a].update(first.split()[2:])
    # the vocabulary of the first segment is the same for both answers
    strip = lambda ws: {w.strip(".,;:!?").lower() for w in ws}
    assert strip(first_words["yes"]) == strip(first_words["no"])
    corpus = {w.lower() for w in WORDS} | {"not", "what", "which", "who", "where", "when", "how"}
    for x, _ in rows[:200]:
        body = x.split(" ", 2)[2].replace(marker.strip(), " ")
        assert strip(body.split()) <= corpus | {""}


def test_positives_are_faithful_and_negatives_change_the_content():
    pool = _sentences()
    for x, a in synthetic_pairs("entail", pool, 300, seed=1):
        premise, hyp = x[len("entail premise: "):].split(" hypothesis: ")
        window = hyp[0].lower() + hyp[1:]
        assert (window in premise.lower()) == (a == "yes")
    for x, a in synthetic_pairs("paraphrase", pool, 300, seed=1):
        s1, s2 = x[len("paraphrase sentence1: "):].split(" sentence2: ")
        if a == "yes":
            assert set(s2.split()) <= set(s1.split())


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown"):
        synthetic_pairs("nli", _sentences(), 10, seed=0)
    with pytest.raises(ConfigError, match="two corpus sentences"):
        synthetic_pairs("entail", _sentences(1), 10, seed=0)
    with pytest.raises(ConfigError, match="unknown"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.synthetic=[overlap, nli]"])
    with pytest.raises(ConfigError, match="lacks a weight"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.supervised_weights={sst2: 1, qnli: 1, mnli: 1, qqp: 1}"])
    with pytest.raises(ConfigError, match="synthetic_rows"):
        load_config(pretrain.T5PretrainConfig, CONFIG, ["data.synthetic_rows=0"])


def test_prepare_adds_synthetic_tasks_from_the_corpus_only(tmp_path: Path, sst2_root: list[str]):
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, sst2_root + [
        "data.synthetic=[entail, paraphrase]", "data.synthetic_rows=50",
        "data.supervised_weights={sst2: 0.5, entail: 0.25, paraphrase: 0.25}",
        "data.vocab_size=60", "data.extra_ids=10", "data.chunk_length=32", "data.eval_fraction=0.1", f"run_dir={tmp_path / 'run'}"])
    tok, train_sets, eval_sets, stats = pretrain.prepare(cfg)
    tasks = stats["supervised_tasks"]
    assert set(tasks) == {"sst2", "entail", "paraphrase"}
    assert tasks["entail"]["train"] + tasks["entail"]["eval"] == 50 and tasks["entail"]["file"].startswith("synthetic:entail")
    assert {t for t, _, _ in stats["rank_eval"].values()} == {"sst2", "entail", "paraphrase"}
    pairs = train_sets[1].pairs + eval_sets[1].pairs
    assert sum(x.startswith("entail premise: ") for x, _ in pairs) == 50
    mix = pretrain.mixture_record(cfg, stats)
    assert mix["supervised"]["tasks"]["entail"]["rate"] == pytest.approx(0.8 * 0.25, rel=0.05)
