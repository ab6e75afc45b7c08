"""Independent stage runs side by side: a dependency-ordered list of jobs on ``workers`` processes.

An experiment's source chains (teachers → source, and the MVLPT source) and a sweep's cells do not
depend on each other except where a cell transfers from a source. :func:`run_jobs` runs such a list
in order on this process (``workers=1``, sharing the caller's backbone pool), or on ``workers``
spawned processes, each with its own pool: a job starts as soon as the jobs it ``needs`` are done,
in list order among those ready. Every job is a whole stage run with its own seed and run
directory, so its result does not depend on where or beside what it ran (tested: the same rows and
the same prompts with 1 and 2 workers).

A job's function is a module-level function (so that a spawned process can import it) called as
``fn(*args, pool)``. When a job fails or the user presses Ctrl-C, no new job starts; the jobs
already running are left to finish (or, on Ctrl-C, to save their checkpoint), their results are
still handed to ``on_done``, and then the first error is raised.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mvlpt.core.errors import ConfigError

from .backbones import BackbonePool

_WORKER_POOL: BackbonePool | None = None


@dataclass(frozen=True)
class Job:
    """One stage run: ``fn(*args, pool)``, started once every job named in ``needs`` is done."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    needs: tuple[str, ...] = ()
    label: str = ""


def _check(jobs: Sequence[Job]) -> None:
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"duplicate job keys: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    seen: set[str] = set()
    for j in jobs:  # a job may only need jobs before it: the list order is a valid serial order
        missing = [n for n in j.needs if n not in seen]
        if missing:
            raise ConfigError(f"job {j.key!r} needs {missing}, which are not earlier in the list")
        seen.add(j.key)


def _interrupt_once(signum: int, frame: Any) -> None:
    """The first Ctrl-C interrupts the run (which saves its checkpoint); later ones, e.g. the one
    :func:`_interrupt_workers` forwards after the terminal's own, cannot cut that save short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _init_worker(threads: int) -> None:
    """A worker handles Ctrl-C even when started from a shell that ignores SIGINT, so that an
    interrupted run saves its checkpoint like a run in the main process; ``threads`` > 0 sets its
    torch threads (a run's own ``threads`` setting still applies over it)."""
    global _WORKER_POOL
    signal.signal(signal.SIGINT, _interrupt_once)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    _WORKER_POOL = BackbonePool()


def _run_in_worker(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    assert _WORKER_POOL is not None
    return fn(*args, _WORKER_POOL)


def run_jobs(jobs: Sequence[Job], workers: int = 1, pool: BackbonePool | None = None,
             on_done: Callable[[Job, Any], None] | None = None,
             on_start: Callable[[Job], None] | None = None, threads: int = 0) -> dict[str, Any]:
    """Run ``jobs`` (each after those it needs) and return ``{key: result}``; ``on_start`` /
    ``on_done`` are called in this process as each job starts / finishes. Workers get ``threads``
    torch threads each (0: the CPU cores shared out among the workers)."""
    _check(jobs)
    on_done = on_done or (lambda job, result: None)
    on_start = on_start or (lambda job: None)
    results: dict[str, Any] = {}
    if workers <= 1 or len(jobs) <= 1:
        pool = pool if pool is not None else BackbonePool()
        for job in jobs:
            on_start(job)
            results[job.key] = job.fn(*job.args, pool)
            on_done(job, results[job.key])
        return results
    waiting = list(jobs)
    running: dict[Future, Job] = {}
    error: BaseException | None = None
    ctx = multiprocessing.get_context("spawn")  # never fork a process whose torch threads are running
    n = min(workers, len(jobs))
    threads = threads if threads > 0 else max(1, (os.cpu_count() or 1) // n)
    ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    try:
        while waiting or running:
            if error is None:
                while len(running) < workers:
                    ready = next((j for j in waiting if all(n in results for n in j.needs)), None)
                    if ready is None:
                        break
                    waiting.remove(ready)
                    on_start(ready)
                    running[ex.submit(_run_in_worker, ready.fn, ready.args)] = ready
            if not running:
                break
            try:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            except KeyboardInterrupt as e:  # stop starting jobs; let the running ones save and stop
                error = error or e
                _interrupt_workers()
                continue
            for fut in finished:
                job = running.pop(fut)
                try:
                    results[job.key] = fut.result()
                except BaseException as e:  # noqa: BLE001 - re-raised below, after the running jobs end
                    error = error or e
                    continue
                on_done(job, results[job.key])
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error
    return results


def _interrupt_workers() -> None:
    """Forward Ctrl-C to the workers, this process's live children (a ``kill -INT`` of this process
    alone does not reach them)."""
    for proc in multiprocessing.active_children():
        if proc.pid and proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass
