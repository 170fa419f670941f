"""SIGTERM and SIGHUP as Ctrl-C: a cancelled CI job (SIGTERM) or a closed terminal (SIGHUP) unwinds
through the same `finally` blocks that remove the probes, and exits 128 + the signal's number (143,
129; Ctrl-C's KeyboardInterrupt exits 130). Cleanup that must finish runs shielded: a second signal
is held until it is done."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_CAUGHT = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread where Ctrl-C raises KeyboardInterrupt (it is one, so
    every `except KeyboardInterrupt` cleanup treats them alike)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum: int, frame) -> None:  # noqa: ARG001
    raise Terminated(signum)


@contextmanager
def interrupts() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise Terminated in the main thread (elsewhere: nothing changes)."""
    if not _main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in _CAUGHT}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def shielded() -> Iterator[None]:
    """Inside: SIGINT, SIGTERM and SIGHUP are held, then raised once the block is done (unless it is
    already unwinding from one)."""
    if not _main_thread():
        yield
        return
    held: list[int] = []
    sigs = (signal.SIGINT, *_CAUGHT)
    old = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in sigs}

    def restore() -> None:
        for s, handler in old.items():
            signal.signal(s, handler)
    try:
        yield
    except BaseException:
        restore()
        raise
    restore()
    if held:
        raise KeyboardInterrupt if held[0] == signal.SIGINT else Terminated(held[0])
