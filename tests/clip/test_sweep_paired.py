"""The sweep's paired-difference table (multitask − single-task baseline, same K and seed), its
config keys (``baseline`` on a method line, ``sweep.seeds_at``) and the cells they give."""

from __future__ import annotations

import csv

import pytest

from mvlpt.clip.pipeline import report, sweep
from mvlpt.clip.pipeline.run_config import load_run_config
from mvlpt.clip.pipeline.stages import StageResult
from mvlpt.core.errors import ConfigError
from mvlpt.core.stats import bootstrap_ci

METHODS = [{"name": "ZS", "stage": "zeroshot"}, {"name": "CoOp", "stage": "single", "method": "coop"},
           {"name": "VPT", "stage": "single", "method": "vpt"}, {"name": "MCoOp", "stage": "target", "method": "coop"},
           {"name": "MVPT", "stage": "target", "method": "vpt"}]


def _cfg(tmp_path=None, **sweep_kw):
    data = {"target": "digits", "sweep": {"shots": [1, 2], "seeds": [1, 2, 3], "methods": METHODS, **sweep_kw}}
    if tmp_path is not None:
        data["output_dir"] = str(tmp_path)
    return load_run_config(None, [], data=data)


def test_seeds_at_overrides_the_seeds_of_one_k():
    cfg = _cfg(seeds_at={1: [1, 2, 3, 4, 5]})
    assert cfg.sweep.seeds_for(1) == [1, 2, 3, 4, 5] and cfg.sweep.seeds_for(2) == [1, 2, 3]
    coop = [(c.shots, c.seed) for c in sweep.cells(cfg) if c.method.name == "CoOp"]
    assert coop == [(1, s) for s in range(1, 6)] + [(2, s) for s in (1, 2, 3)]
    assert [(c.shots, c.seed) for c in sweep.cells(cfg) if c.method.name == "ZS"] == [(0, 0)]
    # from the command line, as the miniature passes it
    ov = load_run_config(None, ["sweep.seeds_at={1: [7, 8]}"], data={"sweep": {"shots": [1, 4]}})
    assert ov.sweep.seeds_for(1) == [7, 8] and ov.sweep.seeds_for(4) == [1, 2, 3]


@pytest.mark.parametrize("seeds_at, match", [({4: [1]}, "not one of sweep.shots"), ({1: []}, "nonempty"),
                                             ({1: [1, 1]}, "duplicate"), ({1: ["a"]}, "int")])
def test_seeds_at_is_validated(seeds_at, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(seeds_at=seeds_at)


def test_default_pairs_are_each_multitask_line_and_its_single_task_line():
    cfg = _cfg()
    assert cfg.sweep.pairs(cfg.method) == [("MCoOp", "CoOp"), ("MVPT", "VPT")]
    # method null = the config's prompt.method; a multitask line with no single-task line has no pair
    nul = load_run_config(None, [], data={"prompt": {"method": "coop"}, "sweep": {"methods": [
        {"name": "C", "stage": "single"}, {"name": "M", "stage": "target"}, {"name": "MU", "stage": "target", "method": "upt"}]}})
    assert nul.sweep.pairs(nul.method) == [("M", "C")]


def test_explicit_baseline_overrides_and_is_validated():
    methods = METHODS + [{"name": "MCoOp (MVLPT)", "stage": "target", "method": "coop", "source_mode": "mvlpt",
                          "baseline": "MCoOp"}, {"name": "UPT", "stage": "single", "method": "upt", "baseline": "CoOp"}]
    cfg = _cfg(methods=methods)
    assert cfg.sweep.pairs(cfg.method) == [("MCoOp", "CoOp"), ("MVPT", "VPT"), ("MCoOp (MVLPT)", "MCoOp"), ("UPT", "CoOp")]
    bad = [({"name": "M", "stage": "target", "baseline": "Nope"}, "not a sweep method"),
           ({"name": "M", "stage": "target", "baseline": "M"}, "own baseline"),
           ({"name": "M", "stage": "target", "baseline": "ZS"}, "zero-shot"),
           ({"name": "Z2", "stage": "zeroshot", "baseline": "CoOp"}, "zero-shot line")]
    for line, match in bad:
        with pytest.raises(ConfigError, match=match):
            _cfg(methods=METHODS + [line])


def _fake(cfg, backbone=None):
    t = cfg.tasks()[0]
    if cfg.stage == "zeroshot":
        acc = 30.0
    else:  # multitask = single + 3 + seed-dependent noise (CoOp) / single − 1 on every seed (VPT)
        base = 40.0 + t.shots + 0.5 * t.seed + (2.0 if cfg.method == "vpt" else 0.0)
        acc = base + ((3.0 + (t.seed % 2)) if cfg.method == "coop" else -1.0) * (cfg.stage == "target")
    return StageResult(cfg.stage, cfg.resolved_run_dir(), {f"{t.name}/accuracy": acc, "score": acc},
                       [{"name": t.name}], steps=1, split="test")


class _NoBackbones:
    def get(self, cfg):
        return None


def test_sweep_writes_the_paired_table_csv_and_two_panel_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run_stage", _fake)
    out = sweep.run_fewshot(_cfg(tmp_path, seeds_at={1: [1, 2, 3, 4, 5]}), _NoBackbones(), progress=False)
    md = out["table"]
    # the mean ± std table keeps its cells and shows n (5 runs at K=1, 3 at K=2)
    assert "| method | K=1 | K=2 | n |" in md and "| ZS | 30.0 | 30.0 | 1 |" in md
    assert "| CoOp | 42.5 ± 0.8 | 43.0 ± 0.5 | 5/3 |" in md
    assert "## Paired differences: multitask − baseline" in md
    d1 = [3.0 + (s % 2) for s in range(1, 6)]
    lo, hi = bootstrap_ci(d1)
    assert f"| MCoOp | CoOp | 1 | 46.1 | 42.5 | +3.6 ▲ | [{lo:+.1f}, {hi:+.1f}] | 5/5 |" in md
    assert "| MVPT | VPT | 2 | 44.0 | 45.0 | -1.0 ▼ | [-1.0, -1.0] | 0/3 |" in md
    with out["paths"]["paired_csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["treatment"], r["baseline"], r["shots"], r["n"]) for r in rows] == [
        ("MCoOp", "CoOp", "1", "5"), ("MCoOp", "CoOp", "2", "3"), ("MVPT", "VPT", "1", "5"), ("MVPT", "VPT", "2", "3")]
    assert float(rows[0]["ci_low"]) == pytest.approx(lo) and rows[0]["verdict"] == "▲"
    from PIL import Image

    with Image.open(out["paths"]["plot"]) as im:
        assert im.size[0] > 1.5 * im.size[1]  # two panels side by side


def test_write_results_pairs_from_rows_and_counts_unpaired():
    rows = [{"method": "S", "stage": "single", "prompt": "coop", "shots": 1, "seed": s, "accuracy": 50.0 + s}
            for s in (1, 2)]
    rows += [{"method": "M", "stage": "target", "prompt": "coop", "shots": 1, "seed": s, "accuracy": 50.0 + 2 * s}
             for s in (1, 2, 3)]
    assert report.default_pairs(rows) == [("M", "S")]
    paired = report.paired_rows(rows, report.default_pairs(rows), [1])
    assert paired[0]["n"] == 2 and paired[0]["unpaired"] == 1 and paired[0]["diff"] == pytest.approx(1.5)
    md = report.paired_markdown(paired)
    assert "| M | S | 1 | 53.0 | 51.5 | +1.5 ▲ | [+1.0, +2.0] | 2/2 (1 unpaired) |" in md
    assert report.paired_markdown([]) == ""


def test_no_pairs_keeps_the_single_panel_report(tmp_path):
    rows = [{"method": "CoOp", "stage": "single", "prompt": "coop", "shots": 1, "seed": s, "accuracy": 50.0} for s in (1, 2)]
    paths = report.write_sweep_results(rows, tmp_path, [1], title="t")
    assert "Paired" not in paths["table_md"].read_text()
    assert paths["paired_csv"].read_text().startswith("treatment,baseline,shots")


def test_k_keyed_sweep_maps_survive_a_saved_run_config():
    """A run's config.json (JSON) gives the K keys of seeds_at / epochs_by_shots back as strings."""
    import json

    from mvlpt.clip.pipeline.run_config import config_from_run
    from mvlpt.core.config import to_dict

    cfg = _cfg(seeds_at={1: [1, 2, 3, 4, 5]}, epochs_by_shots={2: 3.0})
    back = config_from_run(json.loads(json.dumps(to_dict(cfg))))
    assert back.sweep.seeds_at == {1: [1, 2, 3, 4, 5]} and back.sweep.epochs_by_shots == {2: 3.0}
    with pytest.raises(ConfigError, match="shot counts"):
        _cfg(seeds_at={"x": [1]})
