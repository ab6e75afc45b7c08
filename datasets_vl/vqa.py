"""VQA answers: normalisation, the min(#humans/3, 1) soft score and the answer vocabulary."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping, Sequence

_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$']")
_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")


def normalize_answer(ans: str) -> str:
    """VQA-eval style: lower case, punctuation dropped (keeping decimals), number words → digits, articles dropped."""
    s = str(ans).lower().replace("\n", " ").replace("\t", " ").strip()
    s = _PERIOD.sub("", _PUNCT.sub("", s))
    words = [_NUMBERS.get(w, w) for w in s.split() if w not in _ARTICLES]
    return " ".join(words)


def soft_scores(human_answers: Iterable[str]) -> dict[str, float]:
    """Standard VQA soft score per distinct answer: ``min(#humans who gave it / 3, 1)``."""
    counts = Counter(normalize_answer(a) for a in human_answers)
    return {a: min(c / 3.0, 1.0) for a, c in counts.items() if a}


def build_vocab(answers: Iterable[str], max_answers: int) -> list[str]:
    """The ``max_answers`` most frequent (normalised) answers; ties broken alphabetically."""
    counts = Counter(a for a in (normalize_answer(x) for x in answers) if a)
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_answers]]


def index_scores(scores: Mapping[str, float], vocab_index: Mapping[str, int]) -> dict[int, float]:
    """Answer → score  to  vocab index → score (answers outside the vocabulary dropped)."""
    return {vocab_index[a]: float(s) for a, s in scores.items() if a in vocab_index}


def best_label(scores: Mapping[int, float]) -> int:
    """Index of the highest-scoring answer (lowest index on ties), or -1 if none is in the vocabulary."""
    if not scores:
        return -1
    return min(scores, key=lambda k: (-scores[k], k))


def vqa_accuracy(pred: Sequence[int], scores: Sequence[Mapping[int, float]]) -> float:
    """Mean soft score of the predicted answers (the VQA accuracy under the min(#/3, 1) rule)."""
    if not pred:
        return 0.0
    return sum(float(s.get(int(p), 0.0)) for p, s in zip(pred, scores)) / len(pred)
