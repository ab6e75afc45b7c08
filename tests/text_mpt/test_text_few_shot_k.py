"""few_shot_k larger than a label's examples: an error naming the task, the label and its count (it used to
train on everything silently), unless few_shot_if_too_few says what to do (all: Dassl's rule; largest)."""

from __future__ import annotations

import pytest

from mvlpt.core.errors import DataError
from text_mpt.data import few_shot
from text_mpt.tasks import Example


def test_few_shot_k_larger_than_a_label_is_an_error():
    exs = [Example(f"x{i}", ["no", "yes"], int(i % 3 == 0)) for i in range(30)]  # label 1 ('yes'): 10, label 0: 20
    assert len(few_shot(exs, 10, seed=0)) == 20
    with pytest.raises(DataError, match=r"task 'rte': few_shot_k=5000 examples per label, but label 1 \('yes'\) has "
                                        r"only 10 training example\(s\) \(2 of 2 labels.*use few_shot_k <= 10"):
        few_shot(exs, 5000, seed=0, name="rte")


def _labels(exs):
    return [e.label for e in exs]


def test_if_too_few_all_gives_the_short_label_everything_and_keeps_the_others_at_k():
    from text_mpt.data import _few_shot_index

    exs = [Example(f"x{i}", ["no", "yes", "maybe"], 2 if i < 3 else i % 2) for i in range(40)]  # maybe: 3
    short: dict = {}
    idx = _few_shot_index(exs, 8, seed=1, name="cb", if_too_few="all", short_out=short)
    labels = [exs[i].label for i in idx]
    assert (labels.count(0), labels.count(1), labels.count(2)) == (8, 8, 3)
    assert short == {"2 ('maybe')": 3}
    # labels with enough examples get the same draw as under the default rule at a K every label can supply
    assert [exs[i].input_text for i in _few_shot_index(exs, 3, 1, if_too_few="all")] == [e.input_text for e in few_shot(exs, 3, 1)]
    with pytest.raises(DataError, match="few_shot_if_too_few=all"):
        few_shot(exs, 8, seed=1, name="cb")


def test_if_too_few_largest_lowers_k_for_every_label():
    exs = [Example(f"x{i}", ["no", "yes", "maybe"], 2 if i < 3 else i % 2) for i in range(40)]
    labels = _labels(few_shot(exs, 8, seed=1, if_too_few="largest"))
    assert (labels.count(0), labels.count(1), labels.count(2)) == (3, 3, 3)


def test_if_too_few_is_validated_in_the_run_config():
    from mvlpt.core.errors import ConfigError
    from text_mpt.config import load_run_config

    with pytest.raises(ConfigError, match="few_shot_if_too_few must be one of"):
        load_run_config("configs/text/tiny/adapt.yaml", ["few_shot_if_too_few=some", "run_dir=/tmp/x"])
