"""netbench's one command tree (typer + rich). The only place that prints and chooses exit codes.

common.py holds the root app and consoles; lab.py the lab commands, measure.py run/trace/doctor/clean,
results.py report/compare/gate, routes.py `netbench routes`.
"""

from __future__ import annotations

import atexit
import os
import sys

import typer
from rich.text import Text

from netbench import redact
from netbench.cli import lab, measure, results, routes  # noqa: F401 — each registers its commands
from netbench.cli.common import app, err
from netbench.cli.measure import print_mode_comparison
from netbench.errors import NetbenchError

__all__ = ["app", "entry", "main", "print_mode_comparison"]


def main() -> None:
    try:
        # standalone_mode=False returns a command's typer.Exit code instead of raising it
        code = app(standalone_mode=False)
    except NetbenchError as exc:
        err.print(Text.assemble(("error:", "red"), " ", redact.text(str(exc))))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # click's usage errors (typer vendors click, so match by shape) show themselves; bugs keep
        # their traceback.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def entry() -> None:
    """The process's entry point (`netbench`, `python -m netbench`): main(), its exit handlers (logging,
    thread pools), then the end of the process without the interpreter's teardown, which frees the
    objects of scipy, pandas and matplotlib one by one: 0.3 s after every command that used them."""
    code = None
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python prints it
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
