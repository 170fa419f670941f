"""SIGTERM and SIGHUP as Ctrl-C: a cancelled CI job (SIGTERM) or a closed terminal (SIGHUP) unwinds
through the same `finally` blocks that remove the probes, and exits 128 + the signal's number (143,
129; Ctrl-C's KeyboardInterrupt exits 130). Cleanup that must finish runs shielded: a second signal
is held until it is done."""

from __future__ import annotations

import os
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


def _raiser(owner: int):
    """The handler: Terminated in the process that installed it. A process forked from it without exec
    (pyroute2's namespace helpers are) inherits the handler: there a SIGTERM just ends it, as it would
    have without netbench, instead of unwinding a copy of the run (printing, cleaning, holding locks)."""
    def handler(signum: int, frame) -> None:  # noqa: ARG001
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise Terminated(signum)
    return handler


@contextmanager
def interrupts() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise Terminated in the main thread (elsewhere: nothing changes)."""
    if not _main_thread():
        yield
        return
    old = {s: signal.signal(s, _raiser(os.getpid())) for s in _CAUGHT}
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
    owner = os.getpid()

    def hold(signum: int, frame) -> None:  # noqa: ARG001
        if os.getpid() != owner:  # a forked helper: ended, as above
            os._exit(128 + signum)
        held.append(signum)
    old = {s: signal.signal(s, hold) for s in sigs}

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
