"""``run_jobs`` on two workers, for the Ctrl-C test: every job waits until it is interrupted.

``python interrupt_jobs.py DIR``: jobs ``a``, ``b``, ``c`` on two workers; a job writes
``DIR/<key>.started``, then waits; on Ctrl-C it writes ``DIR/<key>.interrupted`` (where a stage run
saves its checkpoint) and re-raises. Exits 130 when ``run_jobs`` raises ``KeyboardInterrupt``."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from mvlpt.clip.pipeline.jobs import Job, run_jobs


def wait_for_ctrl_c(out: str, key: str, pool: Any) -> str:
    (Path(out) / f"{key}.started").write_text("")
    try:
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        (Path(out) / f"{key}.interrupted").write_text("")
        raise


if __name__ == "__main__":
    # a process started in the background of a non-interactive shell (CI) inherits SIGINT as ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = sys.argv[1]
    try:
        run_jobs([Job(k, wait_for_ctrl_c, (out, k)) for k in "abc"], workers=2, threads=1)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    sys.exit(0)
