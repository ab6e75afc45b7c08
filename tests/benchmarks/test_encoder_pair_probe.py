"""benchmarks/encoder_pair_probe.py on a tiny BERT and a made-up pair task: the table is printed and
its figures follow the data (a pair task decided by whether the segments are equal is solved)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

#: words the tiny_encoder fixture (tests/conftest.py) knows
WORDS = "river garden winter yellow market engine silver forest lantern pocket".split()
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "encoder_pair_probe.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_encoder_pair_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_prints_majority_threshold_and_logistic_figures(tiny_encoder: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, capsys):
    rng = random.Random(0)

    def rows(n: int) -> list[dict]:
        out = []
        for i in range(n):
            a = " ".join(rng.choices(WORDS, k=6))
            same = i % 2 == 0
            out.append({"text_a": a, "text_b": a if same else " ".join(rng.choices(WORDS, k=6)),
                        "label": "entailment" if same else "not_entailment"})
        return out

    folder = tmp_path / "glue" / "QNLI"
    folder.mkdir(parents=True)
    for split, n in (("train", 80), ("dev", 40)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n)))
    monkeypatch.setenv("MVLPT_DATA", str(tmp_path))
    assert _load().main(["--encoder", str(tiny_encoder), "--tasks", "qnli", "--train-rows", "80", "--threads", "1"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| qnli "))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "40" and cells[2] == "50.0 %"
    # equal segments have cosine 1: the threshold separates the two labels exactly
    assert cells[3] == "100.0 %" and float(cells[4].rstrip(" %")) >= 50.0


def test_overlap_features_need_no_encoder_and_follow_the_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """``--features overlap``: a pair task decided by whether the second segment repeats the first's words
    is solved by the overlap-share threshold, and no encoder is loaded (none is given)."""
    module = _load()
    assert module.overlap_features("What river runs north?", "The river runs south.") == [2, 3, 3, 2 / 3, 2 / 3]
    rng = random.Random(1)
    rows = []
    for i in range(120):
        a = " ".join(rng.sample(WORDS[:5], 4))
        b = " ".join(rng.sample(WORDS[5:], 4))
        same = i % 2 == 0
        rows.append({"text_a": a, "text_b": a if same else b, "label": "entailment" if same else "not_entailment"})
    folder = tmp_path / "glue" / "QNLI"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:80]))
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[80:]))
    monkeypatch.setenv("MVLPT_DATA", str(tmp_path))
    assert module.main(["--features", "overlap", "--encoder", "/nonexistent", "--tasks", "qnli", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("word-overlap features")
    cells = [c.strip() for c in next(x for x in out.splitlines() if x.startswith("| qnli ")).strip("|").split("|")]
    assert cells[1] == "40" and cells[3] == "100.0 %"
