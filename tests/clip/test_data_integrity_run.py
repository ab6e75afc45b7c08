"""Data integrity in a run's results (issue 14, item 3): ``results.md`` shows ``n`` (images scored)
and the unreadable images; K larger than a class is an error naming ``data.if_too_few``, and with
``largest`` the K used is in the table and the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from clip_helpers import tiny_run
from mvlpt.clip.pipeline import config_for_stage, load_run_config, run_stage
from mvlpt.core.errors import DataError


def _folder(root: Path, n: int = 10) -> Path:
    for c, color in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (12, 12), tuple(max(0, v - 3 * i) for v in color)).save(root / c / f"{c}_{i:02d}.png")
    return root


def _cfg(tmp_path: Path, stage: str, target: dict, **extra):
    data = tiny_run(tmp_path, target=target, output_dir=str(tmp_path / "runs"),
                    train={"max_steps": 1, "batch_size": 4}, **extra)
    return config_for_stage(load_run_config(None, [], data=data), stage)


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_zeroshot_results_show_n_and_the_unreadable_test_images(tmp_path):
    root = _folder(tmp_path / "colors")
    ds = {"name": "colors", "source": "imagefolder", "root": str(root), "test_fraction": 0.5,
          "max_unreadable_fraction": 0.2}
    cfg = _cfg(tmp_path, "zeroshot", {"dataset": ds})
    from datasets_vl import load_task
    test = load_task(ds).splits["test"]  # 10 test images, 5 per class
    bad = Path(test.file_name(0))
    _cut(bad)
    with pytest.warns(RuntimeWarning, match=r"colors/test: skipped 1 unreadable image\(s\) of 10"):
        res = run_stage(cfg)
    assert res.metrics["colors/n"] == 9  # the broken image is not scored (nor replaced by a neighbour)
    md = (res.run_dir / "results.md").read_text()
    head = md.splitlines()[2]
    assert "| n |" in head and "test_unreadable" in head
    row = next(line for line in md.splitlines() if line.startswith("| colors |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cells[cols.index("n")] == "9" and cells[cols.index("test_unreadable")] == "1"
    assert "## Data" in md and bad.name in md
    data = json.loads((res.run_dir / "data.json").read_text())
    assert data["colors"]["splits"]["test"] == {"size": 10, "unreadable": 1, "files": [str(bad)], "scored": 9}


def test_zeroshot_with_too_many_unreadable_test_images_fails(tmp_path):
    root = _folder(tmp_path / "colors")
    ds = {"name": "colors", "source": "imagefolder", "root": str(root), "test_fraction": 0.5}
    from datasets_vl import load_task
    test = load_task(ds).splits["test"]
    for i in range(0, len(test), 2):
        _cut(Path(test.file_name(i)))
    with pytest.raises(DataError, match=r"colors/test: skipped 1 unreadable image\(s\) of 10.*More than 1%"):
        run_stage(_cfg(tmp_path, "zeroshot", {"dataset": ds}))


def test_k_too_large_is_an_error_or_the_largest_k_shown_as_such(tmp_path):
    root = _folder(tmp_path / "colors")  # 8 training images per class
    ds = {"name": "colors", "source": "imagefolder", "root": str(root)}
    with pytest.raises(DataError, match=r"colors: K=32 shots per class, but its smallest class 0 \('blue'\) has only 8 "
                                        r"training example\(s\).*use K <= 8, or data\.if_too_few=largest"):
        run_stage(_cfg(tmp_path, "single", {"dataset": ds, "shots": 32, "hflip": False}))
    res = run_stage(_cfg(tmp_path, "single", {"dataset": ds, "shots": 32, "hflip": False},
                         data={"train_augment": False, "if_too_few": "largest"}))
    assert res.run_dir.name.endswith("_k8of32_s1")
    md = (res.run_dir / "results.md").read_text()
    assert "| K |" in md.splitlines()[2] and "| 8 (of 32) |" in md
    assert "trained with K=8 shots per class, fewer than the K=32 asked for" in md
    assert (res.run_dir / "splits" / "colors_k32_s1.json").is_file()


def test_sweep_table_shows_the_k_used_and_the_images_scored(tmp_path):
    from mvlpt.clip.pipeline import report

    rows = []
    for k in (32, 64):
        run = tmp_path / f"k24of{k}_s1"
        run.mkdir()
        (run / report.DATA_FILE).write_text(json.dumps({"pets": {"shots": 24, "shots_requested": k, "splits": {
            "test": {"size": 40, "unreadable": 2, "files": [], "scored": 38}}}}))
        rows.append({"method": "CoOp", "stage": "single", "prompt": "coop", "shots": k, "seed": 1, "accuracy": 50.0,
                     "split": "test", "run_dir": str(run)})
    paths = report.write_sweep_results(rows, tmp_path / "out", [32, 64], title="pets")
    md = Path(paths["table_md"]).read_text()
    head = md.splitlines()[2]
    assert "K=24 (of 32)" in head and "K=24 (of 64)" in head and "images (n)" in head and "unreadable" in head
    assert "| CoOp | 50.0 | 50.0 | 1 | 38 | 2 |" in md
    assert "K=24 (of 32): the runs trained with fewer shots per class than asked" in md
    plain = [{**r, "run_dir": ""} for r in rows]  # no data.json: the shots asked for, no such legend
    md = Path(report.write_sweep_results(plain, tmp_path / "plain", [32, 64], title="pets")["table_md"]).read_text()
    assert "K=32" in md.splitlines()[2] and "fewer shots" not in md
    runs_csv = Path(paths["runs_csv"]).read_text().splitlines()
    assert runs_csv[0].startswith("method,stage,prompt,shots,seed,accuracy,k_used,n_scored,unreadable")
