"""Scale-out and fault tests of the one loop: torchrun/gloo data parallelism, SIGKILL/SIGINT, atomic writes."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from run_helpers import ENV, SCRIPT, TIMEOUT, strip_elapsed as _strip, wait_for as _wait_for

from mvlpt.core import load_run_prompts
from mvlpt.core import checkpoint as ckpt
from mvlpt.core.logging_utils import read_metrics



def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, **kw):
    return subprocess.run([sys.executable, SCRIPT, *args], env=ENV, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def _prompts(run_dir, step):
    return load_run_prompts(Path(run_dir) / "checkpoints" / f"step_{step}")[0]


def test_two_gloo_ranks_match_one_process(tmp_path):
    """2 ranks at per-rank batch B/2 give the parameters of 1 process at batch B."""
    single = _run([str(tmp_path / "one"), "batch_size=8", "max_steps=6", "eval_every=3"])
    assert single.returncode == 0, single.stderr
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           SCRIPT, str(tmp_path / "two"), "batch_size=4", "max_steps=6", "eval_every=3"]
    two = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _prompts(tmp_path / "one", 6), _prompts(tmp_path / "two", 6)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # evaluation gathers every example exactly once (31 examples do not divide by 2 ranks)
    ev1 = [r for r in read_metrics(tmp_path / "one") if r["split"] == "eval"]
    ev2 = [r for r in read_metrics(tmp_path / "two") if r["split"] == "eval"]
    assert [r["n"] for r in ev2] == [31.0, 31.0] and ev1[-1]["accuracy"] == pytest.approx(ev2[-1]["accuracy"])
    # only rank 0 wrote: one metrics file with one line per logged step
    assert len([r for r in read_metrics(tmp_path / "two") if r["split"] == "train"]) == 6


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    ref = _run([str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr
    # the child blocks inside step 8 (after the step-6 checkpoint) until it is killed
    proc = subprocess.Popen([sys.executable, SCRIPT, str(tmp_path / "crash"), "pause_at=8"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(tmp_path / "crash" / "paused", proc)
    assert (tmp_path / "crash" / "checkpoints" / "step_6").is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "crash" / "checkpoints" / "step_12").exists()
    resumed = _run([str(tmp_path / "crash")])
    assert resumed.returncode == 0, resumed.stderr
    a, b = _prompts(tmp_path / "ref", 12), _prompts(tmp_path / "crash", 12)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _strip(read_metrics(tmp_path / "ref")) == _strip(read_metrics(tmp_path / "crash"))


def test_ctrl_c_writes_a_checkpoint_before_exiting(tmp_path):
    # the child blocks inside step 4 (3 steps done, no checkpoint yet) until SIGINT
    proc = subprocess.Popen([sys.executable, SCRIPT, str(tmp_path / "run"), "pause_at=4", "save_every=100",
                             "max_steps=200"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "run" / "paused", proc)
    assert ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints") is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    assert "interrupted: writing a checkpoint at step" in out
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest is not None and latest.name == "step_3"


def test_crash_during_checkpoint_write_keeps_previous_loadable(tmp_path, monkeypatch):
    prompts = {"p.shared": torch.ones(2, 3)}
    d = tmp_path / "checkpoints"
    ckpt.save_checkpoint_dir(d / "step_1", prompts, {"a": 1}, {"x": torch.zeros(1)}, {"step": 1})
    ckpt.set_latest(d, "step_1")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "write_json", boom)
    with pytest.raises(OSError):
        ckpt.save_checkpoint_dir(d / "step_2", {"p.shared": torch.zeros(2, 3)}, {"a": 2}, {"x": torch.zeros(1)}, {"step": 2})
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(d).name == "step_1"
    assert torch.equal(load_run_prompts(d / "step_1")[0]["p.shared"], torch.ones(2, 3))
    assert not (d / "step_2").exists()
