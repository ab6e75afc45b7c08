"""``data.mismatch``: a supervised pair task's training rows re-paired (each first segment with another row's
second segment) and answered as a mismatch. Only training rows are used (no held-out text leaks into
training), every first segment keeps its own row's text, a pair never meets its own partner, and the
config refuses tasks without a rule or outside ``data.supervised``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mvlpt.core.config import load_config
from mvlpt.core.errors import ConfigError
from text_mpt import pretrain
from text_mpt.pretrain.synthetic import mismatched_pairs

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny_t5.yaml"


def test_rows_keep_their_question_and_take_another_rows_sentence():
    rows = [(f"qnli question: q{i} ? sentence: s{i} .", "yes" if i % 2 else "no") for i in range(20)]
    out = mismatched_pairs("qnli", rows, 500, seed=0)
    assert len(out) == 500 and {t for _, t in out} == {"no"}
    for text, _ in out:
        q, s = text.removeprefix("qnli question: q").split(" ? sentence: s")
        assert q != s.rstrip(" .")  # never its own sentence
    assert len({text for text, _ in out}) > 250  # 500 draws of 380 possible pairs: ~278 distinct expected
    assert out == mismatched_pairs("qnli", rows, 500, seed=0)
    mnli = mismatched_pairs("mnli", [("mnli premise: a hypothesis: b", "yes"), ("mnli premise: c hypothesis: d", "no")], 4, 0)
    assert {t for _, t in mnli} == {"maybe"} and {p for p, _ in mnli} == {"mnli premise: a hypothesis: d", "mnli premise: c hypothesis: b"}


def test_prepare_repairs_training_rows_only(tmp_path: Path, write_jsonl):
    rng = random.Random(0)
    words = "the a cat dog sat ran on under mat hill sun rain bird song long short".split()
    sent = lambda: " ".join(rng.choices(words, k=10))
    rows = [{"idx": i, "text_a": f"what is question{i}?", "text_b": f"sentence{i} " + sent(),
             "label": "entailment" if i % 2 else "not_entailment"} for i in range(200)]
    write_jsonl(tmp_path / "glue/QNLI/train.jsonl", rows)
    cfg = load_config(pretrain.T5PretrainConfig, CONFIG, [
        f"data.root={tmp_path}", "data.files=[glue/QNLI/train.jsonl]", "data.supervised=[qnli]",
        "data.supervised_weights={qnli: 1.0, qnli_mismatch: 0.5}", "data.mismatch=[qnli]", "data.mismatch_rows=300",
        "data.vocab_size=80", "data.extra_ids=10", "data.chunk_length=32", "data.eval_fraction=0.1", f"run_dir={tmp_path / 'run'}"])
    tok, train_sets, eval_sets, stats = pretrain.prepare(cfg)
    tasks = stats["supervised_tasks"]
    assert tasks["qnli_mismatch"]["train"] + tasks["qnli_mismatch"]["eval"] == 300
    assert tasks["qnli_mismatch"]["sampled"] * 2 == pytest.approx(tasks["qnli"]["sampled"], abs=2)
    def ids(text: str) -> tuple[str, str]:  # "qnli question: what is question<q>? sentence: sentence<s> ..."
        return text.split("question")[2].split("?")[0], text.split(" sentence: sentence")[1].split()[0]

    pairs = [ids(p[0]) for ds in (train_sets[1], eval_sets[1]) for p in ds.pairs]
    held_ids = {q for q, s in (ids(p[0]) for p in eval_sets[1].pairs) if q == s}  # qnli's own held-out rows
    assert len(held_ids) == 20
    repaired = [(q, s) for q, s in pairs if q != s]
    assert len(repaired) == 300
    # a held-out row's text never appears re-paired, in training or in the mismatch task's held-out rows
    assert not any(q in held_ids or s in held_ids for q, s in repaired)


@pytest.mark.parametrize("override, match", [
    (["data.mismatch=[sst2]"], "no mismatch rule"),
    (["data.mismatch=[qqp]", "data.supervised=[qnli, sst2]", "data.supervised_weights={}", "data.supervised_share=0"], "must also be in"),
    (["data.mismatch=[qnli]"], "qnli_mismatch"),                              # no weight given for it
])
def test_mismatch_config_checks(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(pretrain.T5PretrainConfig, CONFIG, override)
