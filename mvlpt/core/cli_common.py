"""What both command lines share: the version, "did you mean" for a mistyped command, and the
top-level handling that turns library errors and Ctrl-C into one line and an exit code.

Exit codes: 0 done, 1 a ``--strict`` health check failed (or some inputs were skipped), 2 bad
input (config, arguments, files), 130 interrupted (Ctrl-C; training wrote a checkpoint first).
"""

from __future__ import annotations

import difflib
import sys
from typing import Callable, Sequence

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def package_version() -> str:
    """The installed ``mvlpt`` distribution's version, else ``mvlpt.__version__`` (a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mvlpt")
    except PackageNotFoundError:
        from mvlpt import __version__

        return __version__


def unknown_command(argv: Sequence[str], commands: Sequence[str]) -> str | None:
    """The message for a first argument that is not one of ``commands`` (with the nearest one), else ``None``."""
    if not argv or argv[0].startswith("-") or argv[0] in commands:
        return None
    close = difflib.get_close_matches(argv[0], list(commands), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; the commands are: {', '.join(commands)}"
    return f"unknown command {argv[0]!r}{hint}"


def run_guarded(prog: str, fn: Callable[[], int | None]) -> int:
    """Run ``fn``; library errors → ``<prog>: error: <message>`` on stderr and exit code 2 (a failed
    ``--strict`` health check: 1); Ctrl-C → one line and 130, no traceback."""
    from .errors import MVLPTError
    from .health import HealthCheckError

    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; run the same command again to resume from the latest checkpoint",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except HealthCheckError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except (MVLPTError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
