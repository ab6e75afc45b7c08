import json
from pathlib import Path

import pytest
import torch


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, rows)``: a JSON Lines file of ``rows`` (dicts) at ``path``, folders made."""
    def write(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return write


@pytest.fixture
def one_thread():
    """Run with one intra-op thread (much faster on shared, busy cores), then restore the setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def sst2_root(tmp_path, tiny_words) -> list[str]:
    """A data root in ``tmp_path`` with one SST-2 training file of 120 made-up sentences (words of
    :data:`tiny_words`, labels alternating): the recipe overrides that point at it (root, files, SST-2 as
    the one supervised task)."""
    import random

    rng = random.Random(0)
    rows = [{"idx": i, "text_a": " ".join(rng.choices(tiny_words, k=10)) + ".", "label": str(i % 2)} for i in range(120)]
    (tmp_path / "glue/SST-2").mkdir(parents=True)
    (tmp_path / "glue/SST-2/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [f"data.root={tmp_path}", "data.files=[glue/SST-2/train.jsonl]", "data.supervised=[sst2]"]
