"""Each benchmark script runs in tiny mode, prints its table and writes a complete JSON result."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_variant(v: dict) -> None:
    assert v["throughput"] > 0 and v["round_s_median"] > 0 and v["throughput_best"] >= v["throughput"]
    assert v["saved_activations_mib"] > 0
    assert v["flops_per_round"] > 0 and v["achieved_tflops"] > 0
    assert v["resident_mib"] > 0
    if not torch.cuda.is_available():
        assert v["peak_mib"] is None and v["mfu"] is None  # CPU: no allocator peak, no bf16 peak


def test_t5_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "t5.json"
    _load("t5_train_throughput").main(["--size", "tiny", "--device", "cpu", "--out", str(out),
                                       "--variants", "ours,peft,peft_encoder,ours_score_all"])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "t5_train_throughput"
    assert data["env"]["torch"] == torch.__version__ and "git_commit" in data["env"] and data["env"]["device"] == "cpu"
    assert set(data["variants"]) == {"ours", "peft", "peft_encoder", "ours_score_all"}
    assert set(data["ratios"]) == {"ours/peft", "ours/peft_encoder"}
    for v in data["variants"].values():
        _check_variant(v)
    assert data["headline"] == data["ratios"]["ours/peft"] and data["headline"]["throughput"] > 0
    # PEFT's seq2seq default also prompts the decoder: it must do more work than ours for the same batch
    assert data["variants"]["peft"]["flops_per_round"] > data["variants"]["ours"]["flops_per_round"]
    assert data["variants"]["peft"]["saved_activations_mib"] > data["variants"]["ours"]["saved_activations_mib"]
    # scoring every candidate (KL distillation) runs the decoder once per candidate
    assert data["variants"]["ours_score_all"]["flops_per_round"] > data["variants"]["ours"]["flops_per_round"]
    assert "ours/peft" in capsys.readouterr().out


def test_clip_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "clip.json"
    union = sum(c for _, c in _load("clip_setup").task_sizes(1 / 100))  # tiny: CoOp's class counts / 100, >= 2 each
    _load("clip_train_throughput").main(["--size", "tiny", "--device", "cpu", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "clip_train_throughput"
    assert data["config"]["reference_dtype"] == "fp32" and data["config"]["ours_precision"] == "fp32" and data["config"]["union_classes"] == union == 32
    assert set(data["methods"]) == {"mcoop", "mvpt", "mupt"}
    for res in data["methods"].values():
        variants = res["variants"]
        assert set(variants) == {"reference_union", "union_mixed", "union_grouped", "reference_single", "single"}
        for v in variants.values():
            _check_variant(v)
        # the reference encodes the whole union every step; ours only the classes of the tasks present
        assert variants["reference_union"]["classes_encoded_per_step"] == union
        assert variants["union_grouped"]["classes_encoded_per_step"] < union
        assert set(res["ratios"]) == {"union_mixed", "union_grouped", "single"}
    mcoop = data["methods"]["mcoop"]["variants"]
    # trimmed context + tasks present only: less executed work than the reference pattern
    assert mcoop["union_grouped"]["flops_per_round"] < mcoop["reference_union"]["flops_per_round"]
    assert mcoop["single"]["flops_per_round"] < mcoop["reference_single"]["flops_per_round"]
    assert "ratio union_mixed" in capsys.readouterr().out


def test_stratified_tasks_follow_the_mixing_rates():
    cs = _load("clip_setup")
    assert cs.stratified_tasks([0.5, 0.25, 0.25], 4) == [0, 0, 1, 2]
    assert cs.stratified_tasks([1.0], 3) == [0, 0, 0]
    assert sum(c for _, c in cs.task_sizes(1.0)) == 2191


@pytest.mark.parametrize("name,expected", [("NVIDIA H100 80GB HBM3", 989.4e12), ("NVIDIA H100 PCIe", 756e12),
                                           ("NVIDIA A100-SXM4-80GB", 312e12)])
def test_peak_table(monkeypatch, name, expected):
    bc = _load("bench_common")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    assert bc.peak_bf16_flops(torch.device("cuda")) == expected
    assert bc.peak_bf16_flops(torch.device("cpu")) is None
    assert bc.peak_bf16_flops(torch.device("cpu"), override_tflops=100) == 100e12
