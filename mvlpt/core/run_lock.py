"""An exclusive lock on a run directory: one writer at a time.

``run_dir/.lock`` holds ``{"pid", "host", "started"}`` and is created with ``O_CREAT | O_EXCL``
(atomic: of two processes, one wins). A lock whose owner is on this host and no longer alive is
stale: it is reported and replaced. Any other existing lock refuses the second writer with
:class:`RunLockedError`, naming the owner's pid, host and start time.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .errors import MVLPTError

LOCK_FILE = ".lock"


class RunLockedError(MVLPTError, RuntimeError):
    """Another process is writing to this run directory."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(owner: dict[str, Any]) -> str:
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {owner.get('pid')} on host {owner.get('host')} (started {when})"


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.lock``; released on exit (exceptions and Ctrl-C included)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.owner: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else None
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError):
            return None

    def _stale(self, owner: dict[str, Any]) -> bool:
        return owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) and not pid_alive(owner["pid"])

    def acquire(self) -> None:
        """Take the lock, replacing a stale one (reported); :class:`RunLockedError` when it is held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read()
                if owner == {}:
                    continue  # released meanwhile: try again
                if owner is None:
                    raise RunLockedError(
                        f"{self.path.parent} is locked ({self.path} exists but cannot be read: another run may be "
                        f"starting). If no other run uses this directory, delete {self.path}.") from None
                if not self._stale(owner):
                    raise RunLockedError(
                        f"{self.path.parent} is in use by another run: {_describe(owner)}. Wait for it to finish or "
                        f"use another run directory; if that process is not a run of this directory (e.g. it ran "
                        f"on a machine that is gone), delete {self.path}.") from None
                print(f"replacing the stale lock of {self.path.parent}: {_describe(owner)} is no longer running",
                      flush=True)
                self._break(owner)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.owner = me
            return
        raise RunLockedError(f"could not lock {self.path.parent}: the lock file {self.path} keeps changing")

    def _break(self, owner: dict[str, Any]) -> None:
        """Remove a stale lock, unless another process replaced it meanwhile (then it is put back)."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, json.JSONDecodeError):
            moved = None
        if moved != owner:  # not the lock we judged stale: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self.owner is None:
            return
        if self._read() == self.owner:
            self.path.unlink(missing_ok=True)
        self.owner = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
