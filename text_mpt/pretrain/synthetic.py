"""Synthetic sentence-pair tasks for tiny-t5 pretraining, made from the span-corruption text.

The shared data holds ~8,800 rows per GLUE pair task, too few for a 3.4 M-parameter T5 trained from
scratch to learn to compare two segments (v2.1: QNLI and MNLI at their majority class). These tasks
are generated without limit from sentences of the *pretraining corpus* (training splits of
non-target tasks, already decontaminated), so they add no target-task data. Each asks one question
about two segments that only cross-segment matching answers, and is answered ``yes`` / ``no``
(balanced):

* ``overlap`` (QNLI-like): does the sentence contain what a question-like query asks about? The query
  is a window of a sentence turned into a question; the passage is that sentence, or another one
  with one or two of the query's words spliced in (so one shared word does not decide).
* ``entail`` (RTE-like): is the hypothesis (a window of the premise) stated there? Negatives change
  the window: a content word swapped for another sentence's, a ``not`` inserted, or the window's end
  taken from another sentence.
* ``paraphrase`` (MRPC/QQP-like): is sentence2 sentence1 with a few words dropped or two neighbours
  swapped, or its first half with another sentence's second half?

:func:`mismatched_pairs` (``data.mismatch``) re-pairs a supervised pair task's own *training* rows instead:
each first segment with another row's second segment, answered as a mismatch.
"""

from __future__ import annotations

import random
import re
from typing import Callable, Sequence

from mvlpt.core.errors import ConfigError

#: answer texts (the same as the GLUE pair tasks' verbalizers)
YES, NO = "yes", "no"
_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WH = ("what", "which", "who", "where", "when", "how")


def corpus_sentences(texts: Sequence[str], min_words: int = 8, max_words: int = 40) -> list[list[str]]:
    """Sentences of ``texts`` (split after ``.!?``) as word lists, ``min_words`` … ``max_words`` long,
    duplicates dropped (first occurrence kept, order preserved)."""
    seen: set[str] = set()
    out = []
    for text in texts:
        for s in _SPLIT.split(text):
            words = s.split()
            key = " ".join(words).lower()
            if min_words <= len(words) <= max_words and key not in seen:
                seen.add(key)
                out.append(words)
    return out


def _content(words: Sequence[str]) -> list[int]:
    """Positions of words longer than 3 letters (content words, roughly)."""
    return [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) > 3]


def _window(words: Sequence[str], rng: random.Random, low: int, high: int) -> tuple[int, int]:
    n = rng.randint(low, min(high, len(words)))
    start = rng.randrange(len(words) - n + 1)
    return start, start + n


def _other(pool: Sequence[list[str]], i: int, rng: random.Random) -> list[str]:
    j = rng.randrange(len(pool) - 1)
    return pool[j + (j >= i)]


def _overlap(pool: Sequence[list[str]], i: int, rng: random.Random) -> tuple[str, str]:
    s = pool[i]
    a, b = _window(s, rng, 4, 8)
    query = [rng.choice(_WH)] + [w.strip(".,;:!?") for w in s[a:b]]
    query[-1] += "?"
    if rng.random() < 0.5:
        passage, answer = list(s), YES
    else:
        passage, answer = list(_other(pool, i, rng)), NO
        for _ in range(rng.randint(1, 2)):
            passage.insert(rng.randrange(len(passage) + 1), rng.choice(query[1:]).rstrip("?"))
    return f"overlap question: {' '.join(query)} sentence: {' '.join(passage)}", answer


def _entail(pool: Sequence[list[str]], i: int, rng: random.Random) -> tuple[str, str]:
    s = pool[i]
    a, b = _window(s, rng, 5, 12)
    hyp = list(s[a:b])
    answer = YES
    if rng.random() < 0.5:
        answer = NO
        other = _other(pool, i, rng)
        kind = rng.randrange(3)
        spots = _content(hyp)
        spot = rng.choice(spots) if spots else 0
        donors = [w for w in (other[j] for j in _content(other)) if w.lower() != hyp[spot].lower()]
        if kind == 0 and spots and donors:
            hyp[spot] = rng.choice(donors)
        elif kind == 1:
            hyp.insert(rng.randrange(1, len(hyp)), "not")
        else:
            cut = max(2, len(hyp) // 2)
            c, d = _window(other, rng, len(hyp) - cut, len(hyp) - cut)
            hyp = hyp[:cut] + list(other[c:d])
    hyp[0] = hyp[0][:1].upper() + hyp[0][1:]
    return f"entail premise: {' '.join(s)} hypothesis: {' '.join(hyp)}", answer


def _paraphrase(pool: Sequence[list[str]], i: int, rng: random.Random) -> tuple[str, str]:
    s = pool[i]
    if rng.random() < 0.5:
        other = _other(pool, i, rng)
        half = len(s) // 2
        second = other[len(other) // 2:]
        return f"paraphrase sentence1: {' '.join(s)} sentence2: {' '.join(s[:half] + second)}", NO
    keep = [w for w in s if rng.random() > 0.1] or list(s)
    if len(keep) > 2:
        k = rng.randrange(len(keep) - 1)
        keep[k], keep[k + 1] = keep[k + 1], keep[k]
    return f"paraphrase sentence1: {' '.join(s)} sentence2: {' '.join(keep)}", YES


#: synthetic task name → generator ``(sentences, index, rng) -> (input, target)``
SYNTHETIC_TASKS: dict[str, Callable[[Sequence[list[str]], int, random.Random], tuple[str, str]]] = {
    "overlap": _overlap, "entail": _entail, "paraphrase": _paraphrase}


def check_synthetic(tasks: Sequence[str]) -> None:
    """Reject unknown synthetic task names."""
    for t in tasks:
        if t not in SYNTHETIC_TASKS:
            raise ConfigError(f"synthetic task {t!r} is unknown; choose from {sorted(SYNTHETIC_TASKS)}")


def synthetic_pairs(task: str, sentences: Sequence[list[str]], rows: int, seed: int) -> list[tuple[str, str]]:
    """``rows`` seeded ``(input, target)`` examples of ``task``; each draws its own sentence."""
    check_synthetic([task])
    if len(sentences) < 2:
        raise ConfigError("synthetic tasks need at least two corpus sentences")
    rng = random.Random(f"{seed}-synthetic-{task}")
    make = SYNTHETIC_TASKS[task]
    return [make(sentences, rng.randrange(len(sentences)), rng) for _ in range(rows)]


#: pair task → (the marker that opens its second segment in the formatted input, the answer of a
#: mismatched pair: no entailment / not a duplicate / neither entailed nor contradicted)
MISMATCH = {"qnli": (" sentence: ", NO), "qqp": (" question2: ", NO), "mnli": (" hypothesis: ", "maybe")}
#: a re-paired task is named ``<task>`` + this
MISMATCH_SUFFIX = "_mismatch"


def check_mismatch(tasks: Sequence[str], supervised: Sequence[str]) -> None:
    """Reject mismatch tasks that are not pair tasks with a known answer, or not supervised."""
    for t in tasks:
        if t not in MISMATCH:
            raise ConfigError(f"data.mismatch: {t!r} has no mismatch rule; choose from {sorted(MISMATCH)}")
        if t not in supervised:
            raise ConfigError(f"data.mismatch: {t!r} must also be in data.supervised (its rows are re-paired)")


def mismatched_pairs(task: str, rows: Sequence[tuple[str, str]], n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` seeded examples of ``task``'s format whose second segment comes from another row of ``rows``
    (formatted training rows of ``task``), answered as a mismatch (:data:`MISMATCH`). The first segment
    keeps every row's own question or premise, so only the *pair* decides the answer: a question seen
    with its own sentence and with others' cannot be answered from the question alone, and a pair is
    rarely drawn twice, so it cannot be memorised."""
    marker, answer = MISMATCH[task]
    split = [r[0].split(marker) for r in rows]
    split = [s for s in split if len(s) == 2]
    if len(split) < 2:
        raise ConfigError(f"data.mismatch: {task!r} needs at least two rows with one {marker.strip()!r} each")
    rng = random.Random(f"{seed}-mismatch-{task}")
    out = []
    for _ in range(n):
        i = rng.randrange(len(split))
        out.append((f"{split[i][0]}{marker}{_other(split, i, rng)[1]}", answer))
    return out
