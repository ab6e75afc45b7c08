"""Every built-in task loads and formats from the real subsets in ../shared/data (skipped without them)."""

import pytest

from text_mpt.config import TaskConfig
from text_mpt.data import load_examples
from text_mpt.tasks import BUILTIN


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_task_loads_from_shared_data(shared_data, name):
    exs = load_examples(TaskConfig(name=name), "eval", data_root=str(shared_data))
    spec = BUILTIN[name]
    assert len(exs) >= 50
    assert all(e.input_text and e.label is not None and 0 <= e.label < len(e.candidates) for e in exs)
    labels = {e.label for e in exs}
    assert len(labels) >= (2 if spec.regression is None else 10), labels
    if spec.regression is not None:
        assert all(0.0 <= e.value <= 5.0 for e in exs)
