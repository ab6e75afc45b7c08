"""few_shot_k larger than a label's examples is an error naming the task, the label and its count
(it used to train on everything silently)."""

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
