"""Run integrity: a run directory is bound to its config, locked while training, and resumes only from
complete checkpoints (issue 14, findings 1, 2 and 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from run_helpers import ENV, SCRIPT, TIMEOUT, stop_after as _stop_after, strip_elapsed as _strip, wait_for as _wait_for
from toy import ToyDataset, ToyTaskModel, toy_collate

from mvlpt.core import DecomposedPrompt, Trainer, TrainConfig, from_dict
from mvlpt.core import checkpoint as ckpt
from mvlpt.core.errors import MVLPTError
from mvlpt.core.logging_utils import read_metrics
from mvlpt.core.run_dir import EXCLUDED, RunConfigMismatchError, config_diff, fingerprint
from mvlpt.core.run_lock import LOCK_FILE, RunLock, RunLockedError



def _cfg(**kw):
    base = {"max_steps": 12, "batch_size": 8, "log_every": 1, "save_every": 3, "keep_last": 10, "progress": False,
            "tensorboard": False, "clip_grad_norm": 0.0, "optim": {"name": "adamw", "lr": 0.05}}
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return from_dict(TrainConfig, base)


def _trainer(run_dir, fresh=False, **kw):
    torch.manual_seed(0)
    model = ToyTaskModel(DecomposedPrompt(2, (4, 8)))
    return model, Trainer(model, [ToyDataset(0), ToyDataset(1, n=50)], toy_collate, _cfg(**kw), run_dir,
                          eval_datasets=[ToyDataset(0, n=21), ToyDataset(1, n=10)], fresh=fresh)


# ------------------------------------------------------------------------------------------ fingerprint

def test_fingerprint_ignores_the_excluded_keys_only():
    base = {"train": {"optim": {"lr": 0.05}, "seed": 0, "keep_last": 2, "progress": True, "health": {"strict": False}},
            "run_dir": "a", "fresh": False, "prompt": {"class_token_position": "end"}}
    same = json.loads(json.dumps(base))
    same.update(run_dir="b", fresh=True)
    same["train"].update(keep_last=5, progress=False, health={"strict": True})
    assert fingerprint(base) == fingerprint(same) and config_diff(base, same) == []
    for key, val in (("optim", {"lr": 0.5}), ("seed", 1)):
        other = json.loads(json.dumps(base))
        other["train"][key] = val
        assert fingerprint(other) != fingerprint(base)
    other = json.loads(json.dumps(base))
    other["prompt"]["class_token_position"] = "middle"
    assert config_diff(base, other) == [("prompt.class_token_position", "end", "middle")]
    assert "train.keep_last" in EXCLUDED and "train.optim.lr" not in EXCLUDED


def test_a_key_added_later_keeps_old_fingerprints_at_its_old_behaviour():
    # runs made before train.select_ties existed have no such key; at "first" (the old rule) they keep
    # their fingerprint, so they resume after an upgrade; "last" changes results and the fingerprint
    old = {"train": {"optim": {"lr": 0.05}, "seed": 0}}
    new = json.loads(json.dumps(old))
    new["train"]["select_ties"] = "first"
    assert fingerprint(new) == fingerprint(old) and config_diff(old, new) == []
    new["train"]["select_ties"] = "last"
    assert fingerprint(new) != fingerprint(old)
    assert config_diff(old, new)[0][0] == "train.select_ties"


# ------------------------------------------------------------------------------------------ finding 1

def test_finished_run_same_config_returns_the_saved_result_and_says_so(tmp_path, capsys):
    _, t1 = _trainer(tmp_path)
    first = t1.fit()
    rows = read_metrics(tmp_path)
    capsys.readouterr()
    model, t2 = _trainer(tmp_path, keep_last=3, log_every=4)  # excluded keys may change
    calls = []
    model.step = lambda batch: calls.append(1)  # training would call it
    again = t2.fit()
    assert "already finished at step 12; returning the saved result" in capsys.readouterr().out
    assert calls == [] and again["final"] == first["final"] and again["step"] == 12
    assert read_metrics(tmp_path) == rows
    assert again["fingerprint"] == first["fingerprint"] == t1.fingerprint
    for t, out in ((t1, first), (t2, again)):  # the pipelines then report the selected checkpoint on test
        t.evaluate_selected(out, [ToyDataset(0, n=21), ToyDataset(1, n=10)])
    assert [r["split"] for r in read_metrics(tmp_path)].count("test") == 1


@pytest.mark.parametrize("change, key, old, new", [
    ({"optim": {"lr": 0.5}}, "train.optim.lr", "0.05", "0.5"),
    ({"seed": 1}, "train.seed", "0", "1"),
    ({"max_steps": 20}, "train.max_steps", "12", "20"),
])
def test_other_config_on_a_finished_run_is_refused_and_nothing_changes(tmp_path, change, key, old, new):
    _, t1 = _trainer(tmp_path)
    t1.fit()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    _, t2 = _trainer(tmp_path, **change)
    with pytest.raises(RunConfigMismatchError) as e:
        t2.fit()
    assert isinstance(e.value, MVLPTError)
    msg = str(e.value)
    assert f"{key}: {old} → {new}" in msg and "--fresh" in msg and str(tmp_path) in msg
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # provenance intact
    assert not (tmp_path / LOCK_FILE).exists()


def test_other_config_on_an_unfinished_run_is_refused(tmp_path):
    _, t1 = _trainer(tmp_path)
    _stop_after(t1, 6)
    _, t2 = _trainer(tmp_path, optim={"lr": 0.5})
    with pytest.raises(RunConfigMismatchError, match="train.optim.lr: 0.05 → 0.5"):
        t2.fit()
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step_6"


def test_fresh_removes_the_old_run_and_trains_the_new_config(tmp_path, capsys):
    _, t1 = _trainer(tmp_path)
    t1.fit()
    (tmp_path / "leftover.txt").write_text("from the old run")
    ref_dir = tmp_path.parent / (tmp_path.name + "_ref")
    ref_model, ref = _trainer(ref_dir, optim={"lr": 0.5})
    ref.fit()
    model, t2 = _trainer(tmp_path, fresh=True, optim={"lr": 0.5})
    t2.fit()
    assert "already finished" not in capsys.readouterr().out
    assert not (tmp_path / "leftover.txt").exists() and not (tmp_path / LOCK_FILE).exists()
    assert json.loads((tmp_path / "config.json").read_text())["train"]["optim"]["lr"] == 0.5
    assert _strip(read_metrics(tmp_path)) == _strip(read_metrics(ref_dir))  # nothing of the old run mixed in
    for a, b in zip(model.prompt.parameters(), ref_model.prompt.parameters()):
        assert torch.equal(a, b)


def test_resume_says_where_it_resumes_from(tmp_path, capsys):
    _, t1 = _trainer(tmp_path)
    _stop_after(t1, 6)
    capsys.readouterr()
    _, t2 = _trainer(tmp_path, progress=False, keep_last=4)
    t2.fit()
    assert "resuming from step 6 (checkpoints/step_6)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ finding 2

def _write_lock(run_dir: Path, pid: int, host: str) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host, "started": 1_700_000_000.0}
    (run_dir / LOCK_FILE).write_text(json.dumps(owner))
    return owner


@pytest.mark.parametrize("host", ["here", "elsewhere.example"])
def test_a_held_lock_refuses_a_second_writer_naming_its_owner(tmp_path, host):
    pid = os.getppid()  # alive while this test runs
    hostname = socket.gethostname() if host == "here" else host
    _write_lock(tmp_path, pid, hostname)
    _, t = _trainer(tmp_path)
    with pytest.raises(RunLockedError) as e:
        t.fit()
    assert f"pid {pid} on host {hostname} (started " in str(e.value) and "in use by another run" in str(e.value)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == pid  # not taken over
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_a_stale_lock_is_reported_and_replaced(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path, dead.pid, socket.gethostname())
    _, t = _trainer(tmp_path)
    t.fit()
    out = capsys.readouterr().out
    assert f"replacing the stale lock of {tmp_path}: pid {dead.pid} on host" in out and "is no longer running" in out
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_is_held_during_fit_and_released_on_errors_and_ctrl_c(tmp_path):
    held = []

    def failing(run_dir, exc):
        def step(batch):
            held.append(json.loads((run_dir / LOCK_FILE).read_text())["pid"])
            raise exc
        return step

    for name, exc in (("err", RuntimeError("boom")), ("int", KeyboardInterrupt())):
        model, t = _trainer(tmp_path / name)
        model.step = failing(tmp_path / name, exc)
        with pytest.raises(type(exc)):
            t.fit()
        assert not (tmp_path / name / LOCK_FILE).exists()
    assert held == [os.getpid(), os.getpid()]
    with RunLock(tmp_path / "ctx") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError):
            RunLock(tmp_path / "ctx").acquire()
    assert not lock.path.exists()


def test_two_processes_on_one_run_dir_the_second_refuses(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, SCRIPT, str(run), "pause_at=4", "save_every=100", "max_steps=200"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "paused", first)  # the first holds the lock, inside step 4
        metrics = (run / "metrics.jsonl").read_text()
        second = subprocess.run([sys.executable, SCRIPT, str(run), "optim.lr=0.5"], env=ENV, capture_output=True,
                                text=True, timeout=TIMEOUT)
        assert second.returncode != 0
        assert f"in use by another run: pid {first.pid} on host {socket.gethostname()}" in second.stderr
        assert (run / "metrics.jsonl").read_text() == metrics  # nothing interleaved
        assert json.loads((run / "config.json").read_text())["train"]["optim"]["lr"] == 0.05
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=TIMEOUT)
    assert not (run / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------ finding 5

def _interrupted_run(run_dir, stop_at=6, **kw):
    _, t = _trainer(run_dir, **kw)
    _stop_after(t, stop_at)


def _reference(tmp_path, **kw):
    model, t = _trainer(tmp_path / "ref", **kw)
    t.fit()
    return model


def test_missing_trainer_state_resumes_from_the_previous_complete_checkpoint(tmp_path, capsys):
    ref = _reference(tmp_path)
    run = tmp_path / "run"
    _interrupted_run(run)
    (run / "checkpoints" / "step_6" / ckpt.STATE_FILE).unlink()
    capsys.readouterr()
    model, t = _trainer(run)
    t.fit()
    out = capsys.readouterr().out
    assert "skipping checkpoints/step_6: trainer_state.json missing" in out
    assert "resuming from step 3 (checkpoints/step_3)" in out
    for a, b in zip(model.prompt.parameters(), ref.prompt.parameters()):
        assert torch.equal(a, b)
    assert _strip(read_metrics(run)) == _strip(read_metrics(tmp_path / "ref"))


def test_truncated_latest_prompts_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    _interrupted_run(run)
    f = run / "checkpoints" / "step_6" / ckpt.PROMPTS_FILE
    f.write_bytes(f.read_bytes()[: f.stat().st_size - 7])
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step_3"
    capsys.readouterr()
    _, t = _trainer(run)
    t.fit()
    out = capsys.readouterr().out
    assert "skipping checkpoints/step_6: prompts.safetensors unreadable" in out and "truncated" in out
    assert "resuming from step 3 (checkpoints/step_3)" in out


def test_no_complete_checkpoint_starts_at_zero_and_keeps_what_it_cannot_replace(tmp_path, capsys):
    ref = _reference(tmp_path, keep_last=1)
    run = tmp_path / "run"
    _interrupted_run(run, keep_last=1)
    assert [p.name for p in ckpt.step_dirs(run / "checkpoints")] == ["step_6"]
    (run / "checkpoints" / "step_6" / ckpt.STATE_FILE).unlink()
    capsys.readouterr()
    _, t = _trainer(run, keep_last=1)
    _stop_after(t, 3)  # first save of the new attempt: step 3, while the broken step 6 is still the newest
    out = capsys.readouterr().out
    assert "skipping checkpoints/step_6: trainer_state.json missing" in out and "starting from step 0" in out
    assert [p.name for p in ckpt.step_dirs(run / "checkpoints")] == ["step_3", "step_6"]
    model, t = _trainer(run, keep_last=1)
    t.fit()
    assert [p.name for p in ckpt.step_dirs(run / "checkpoints")] == ["step_12"]
    for a, b in zip(model.prompt.parameters(), ref.prompt.parameters()):
        assert torch.equal(a, b)
    assert _strip(read_metrics(run)) == _strip(read_metrics(tmp_path / "ref"))  # the first attempt's lines are gone


def test_keep_last_never_deletes_the_only_complete_or_the_new_checkpoint(tmp_path):
    d = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint_dir(d / f"step_{step}", {"p": torch.ones(2)}, {"a": 1}, {"x": torch.zeros(1)}, {"step": step})
    (d / "step_4" / ckpt.OPTIM_FILE).unlink()  # newest is broken
    assert ckpt.prune_checkpoints(d, 1, d / "step_2") == [d / "step_1"]  # step_3, step_4 are newer: kept
    assert ckpt.prune_checkpoints(d, 2, d / "step_3") == []  # step_3 + the newest older complete one
    assert ckpt.prune_checkpoints(d, 1, d / "step_3") == [d / "step_2"]
    assert [p.name for p in ckpt.step_dirs(d)] == ["step_3", "step_4"]
    (d / "step_3" / ckpt.STATE_FILE).write_text("{truncated")
    found, skipped = ckpt.find_checkpoint(d)
    assert found is None and skipped[0] == "skipping checkpoints/step_4: optimizer.safetensors missing"
    assert skipped[1].startswith("skipping checkpoints/step_3: trainer_state.json unreadable")
