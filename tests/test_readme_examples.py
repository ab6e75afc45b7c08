"""The README's "Python API" examples run as written (offline, tiny backbones), each in a temporary
directory that sees the repository's ``configs/``."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def python_api_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python API\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Python API' section"
    return re.findall(r"```python\n(.*?)```", section.group(1), re.S)


def test_the_section_has_one_example_per_head():
    blocks = python_api_blocks()
    assert len(blocks) == 2
    assert "from mvlpt.clip import create_prompted_model" in blocks[0]
    assert "from text_mpt import create_prompted_model" in blocks[1]
    for block in blocks:
        assert "create_prompted_model(run=" in block and ".trainer().fit()" in block and ".predict(" in block


@pytest.mark.parametrize("index", [0, 1], ids=["clip", "text"])
def test_readme_python_example_runs(index, tmp_path, monkeypatch, capsys):
    block = python_api_blocks()[index]
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # health notes of a 20-step run on a tiny backbone
            exec(compile(block, f"README.md:python-api[{index}]", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert "'prediction'" in out or "'answer'" in out
    assert elapsed < 60, f"the README example took {elapsed:.0f} s"
    if index == 0:
        assert (tmp_path / "runs/api/coop_digits/prompts.safetensors").is_file()
        assert (tmp_path / "runs/api/single_coop_digits_k4_s1/checkpoints").is_dir()
    else:
        assert (tmp_path / "adapters/polarity/adapter_config.json").is_file()
