"""Independent runs side by side (``workers``): the job runner's order and errors, and an experiment
whose results (rows and trained prompts) are the same with 1 and 2 worker processes."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml

from clip_helpers import tiny_run

from mvlpt.clip import cli
from mvlpt.clip.pipeline.jobs import Job, run_jobs
from mvlpt.core.checkpoint import load_tensors
from mvlpt.core.errors import ConfigError


# -- toy jobs (module level: a spawned worker imports them) ----------------------------------------
def _write(path: str, delay: float, pool) -> int:
    time.sleep(delay)
    Path(path).write_text("done")
    return os.getpid()


def _read(path: str, pool) -> str:
    return Path(path).read_text()  # raises if the job it needs had not finished


def _fail(pool) -> None:
    raise ValueError("this job fails")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_starts_only_after_the_jobs_it_needs(tmp_path, workers):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    jobs = [Job("slow", _write, (a, 1.0)), Job("fast", _write, (b, 0.0)),
            Job("after_slow", _read, (a,), needs=("slow",)), Job("after_fast", _read, (b,), needs=("fast",))]
    order: list[str] = []
    out = run_jobs(jobs, workers, on_done=lambda job, r: order.append(job.key))
    assert out["after_slow"] == out["after_fast"] == "done"
    assert order.index("slow") < order.index("after_slow") and order.index("fast") < order.index("after_fast")
    if workers == 2:
        assert out["slow"] != os.getpid() and out["fast"] != os.getpid()  # ran in worker processes
        assert order.index("after_fast") < order.index("slow")  # did not wait for the unrelated slow job


def test_a_failing_job_stops_new_jobs_and_keeps_the_running_ones_results(tmp_path):
    a = str(tmp_path / "a")
    jobs = [Job("fails", _fail), Job("running", _write, (a, 1.0)),
            Job("never", _write, (str(tmp_path / "never"), 0.0), needs=("fails",))]
    done: list[str] = []
    with pytest.raises(ValueError, match="this job fails"):
        run_jobs(jobs, 2, on_done=lambda job, r: done.append(job.key))
    assert done == ["running"] and Path(a).read_text() == "done"
    assert not (tmp_path / "never").exists()


def test_ctrl_c_of_the_main_process_reaches_the_running_workers_and_starts_no_new_job(tmp_path):
    # a ``kill -INT`` of the main process alone (not its process group): the workers hear of it only
    # through run_jobs, each saves (writes its marker) and stops, job c never starts, run_jobs raises
    import signal
    import subprocess
    import sys

    script = Path(__file__).with_name("interrupt_jobs.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(script.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300  # a hang guard only: a spawned worker imports torch
    while not all((tmp_path / f"{k}.started").exists() for k in "ab"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the two workers did not start"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("run_jobs did not stop after Ctrl-C: the workers were not interrupted") from None
    assert proc.returncode == 130, err
    assert "interrupted" in out
    assert (tmp_path / "a.interrupted").exists() and (tmp_path / "b.interrupted").exists()
    assert not (tmp_path / "c.started").exists()


def test_job_lists_must_name_earlier_jobs():
    with pytest.raises(ConfigError, match="needs"):
        run_jobs([Job("b", _fail, needs=("a",)), Job("a", _fail)], 2)
    with pytest.raises(ConfigError, match="duplicate"):
        run_jobs([Job("a", _fail), Job("a", _fail)], 1)


# -- an experiment on 1 and 2 workers ---------------------------------------------------------------
def _experiment(root: Path, workers: int) -> Path:
    root.mkdir()
    cfg = tiny_run(
        root,
        prompt={"method": "coop", "text": {"length": 4}, "visual": {"length": 2}, "vqa_max_answers": 6},
        train={"batch_size": 16, "eval_batch_size": 64, "max_steps": 6, "log_every": 2, "clip_grad_norm": 0.0,
               "optim": {"name": "adamw", "lr": 0.05, "weight_decay": 0.0}, "schedule": {"name": "constant"},
               "sampling": {"strategy": "uniform"}},
        output_dir=str(root / "runs"), threads=1, workers=workers,
        sources=[{"dataset": "easy_vqa_shape", "max_train": 48, "max_eval": 24},
                 {"dataset": "easy_vqa_color", "max_train": 48, "max_eval": 24}],
        target={"dataset": "digits", "max_eval": 40, "hflip": False},
        stages={"teachers": {"train": {"max_steps": 8}}, "source": {"train": {"max_steps": 8}}},
        sweep={"shots": [1], "seeds": [1],
               "methods": [{"name": "ZS-CLIP", "stage": "zeroshot"}, {"name": "CoOp", "stage": "single"},
                           {"name": "MCoOp", "stage": "target"},
                           {"name": "MCoOp (MVLPT)", "stage": "target", "source_mode": "mvlpt"}]},
    )
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    threads = torch.get_num_threads()
    try:
        assert cli.main(["experiment", "--config", str(path)]) == 0
    finally:
        torch.set_num_threads(threads)
    return Path(cfg["output_dir"])


def _rows(runs: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    with open(runs / "fewshot_digits" / "runs.csv") as f:
        return {(r["method"], r["shots"], r["seed"]): (r["accuracy"], r["steps"]) for r in csv.DictReader(f)}


def test_an_experiment_gives_the_same_results_on_two_workers(tmp_path):
    serial, parallel = _experiment(tmp_path / "w1", 1), _experiment(tmp_path / "w2", 2)
    assert _rows(serial) == _rows(parallel) and len(_rows(serial)) == 4
    for run in ("teachers_coop", "source_coop", "source_coop_mvlpt", "fewshot_digits/MCoOp/k1_s1",
                "fewshot_digits/MCoOp-MVLPT/k1_s1", "fewshot_digits/CoOp/k1_s1"):
        (a_ckpt,) = (serial / run / "checkpoints").glob("step_*")
        (b_ckpt,) = (parallel / run / "checkpoints").glob("step_*")
        a, b = load_tensors(a_ckpt / "prompts.safetensors"), load_tensors(b_ckpt / "prompts.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run
    assert "| MCoOp (MVLPT) |" in (parallel / "fewshot_digits" / "results.md").read_text()
    saved = json.loads((parallel / "source_coop" / "config.json").read_text())
    assert saved["workers"] == 2 and saved["train"]["progress"] is False  # workers draw no per-run bars
    again = _rows(parallel)  # a re-run with workers=1 finds every cell done (workers is no part of a fingerprint)
    tiny_yaml = parallel.parent / "exp.yaml"
    cfg = yaml.safe_load(tiny_yaml.read_text())
    cfg["workers"] = 1
    tiny_yaml.write_text(yaml.safe_dump(cfg))
    assert cli.main(["experiment", "--config", str(tiny_yaml)]) == 0
    assert _rows(parallel) == again
    with open(parallel / "fewshot_digits" / "runs.jsonl") as f:
        assert len(f.read().splitlines()) == 4  # nothing re-ran
