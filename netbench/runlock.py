"""One run at a time per node, and nothing left behind: the orchestrator's side of probes/runlock.py.

A run or trace takes every node it touches (`acquire`: refused with the holder's run id, owner and
start, exit 2, while another live run holds it), renews the lock from a heartbeat while it works and
`release`s at the end. A node whose run stopped renewing — netbench killed with -9, the SSH path gone —
cleans itself within the expiry (the node-side watchdog); `netbench clean` is for what older versions
left and for `--force`.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from netbench.errors import NetbenchError, UserError
from netbench.remote import NODE_PYTHON_SH, CommandResult, Runner

PROBE = Path(__file__).resolve().parents[1] / "probes" / "runlock.py"
BASE = "/run/netbench"  # the node's private directory (probes/runlock.py makes it, mode 700)
DEFAULT_EXPIRY = 90.0  # seconds a node waits for a renewal before it removes the run's probes
_RENEW = 'touch -c "$1/alive" && test -e "$1/alive"'  # exit 1: the node already removed the run


class NodeBusy(UserError):
    """Another live run holds the node: this one is refused before it changes anything."""

    def __init__(self, node: str, holder: dict) -> None:
        self.node, self.holder = node, holder
        started = holder.get("started")
        when = (time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started))
                if isinstance(started, (int, float)) else "?")
        super().__init__(f"{node}: in use by run {holder.get('run_id')} of {holder.get('owner')}, started {when} "
                         f"(renewed {holder.get('renewed_s_ago')} s ago, expires after {holder.get('expiry')} s "
                         "without renewal); wait for it to finish, or `netbench clean --force` if you know it is dead")


def _owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


@dataclass(frozen=True)
class RunLock:
    """Who a run is, as every node it touches records it."""

    run_id: str
    owner: str
    expiry: float = DEFAULT_EXPIRY

    @classmethod
    def new(cls, expiry: float = DEFAULT_EXPIRY) -> "RunLock":
        return cls(time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3), _owner(), float(expiry))

    @property
    def workdir(self) -> str:
        """The run's private directory on every node (mode 700, made atomically by acquire)."""
        return f"{BASE}/{self.run_id}"


def _call(runner: Runner, args: list[str], timeout: float) -> CommandResult:
    return runner.run(["sh", "-c", f'exec {NODE_PYTHON_SH} - "$@"', "nb-runlock", *args], input=PROBE.read_text(),
                      timeout=timeout, check=False)


def _answer(runner: Runner, result: CommandResult) -> dict:
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        raise NetbenchError(f"{runner.name}: node lock: {answer['error']}")
    if not isinstance(answer, dict) or result.exit_code not in (0, 4):
        result.check()  # unreachable, timed out, no python3: the command's own error says which
        raise NetbenchError(f"{runner.name}: node lock: unexpected answer {result.stdout.strip()[-200:]!r}")
    return answer


def acquire(runner: Runner, lock: RunLock, timeout: float = 30.0) -> dict:
    """Take the node for this run (what dead runs left is removed first); raises NodeBusy."""
    answer = _answer(runner, _call(runner, ["acquire", lock.run_id, lock.owner, f"{lock.expiry:g}"], timeout))
    if "busy" in answer:
        raise NodeBusy(runner.name, answer["busy"])
    return answer


def release(runner: Runner, run_id: str, timeout: float = 30.0) -> dict:
    """Remove all the run made on the node and its lock; counts of pods and processes removed."""
    return _answer(runner, _call(runner, ["release", run_id], timeout))


def clean(runner: Runner, force: bool = False, timeout: float = 30.0) -> dict:
    """What dead runs left (every run's with force); {"busy": holder} when a live run holds the node."""
    return _answer(runner, _call(runner, ["clean", *(["--force"] if force else [])], timeout))


def renew(runner: Runner, lock: RunLock, timeout: float) -> CommandResult:
    return runner.run(["sh", "-c", _RENEW, "nb-renew", lock.workdir], timeout=timeout, check=False)


class Heartbeat:
    """Renews the run's lock on each node it holds, a thread per node (one hung node delays no other)
    on a connection of its own (Fleet.spare), every quarter of the expiry. A node that answers that
    the run is gone calls on_lost."""

    def __init__(self, lock: RunLock, on_lost: Callable[[str, str], None]) -> None:
        self.lock, self.on_lost = lock, on_lost
        self.interval = max(0.2, lock.expiry / 4)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list = []

    def add(self, conn) -> None:
        self._conns.append(conn)
        t = threading.Thread(target=self._beat, args=(conn,), name=f"heartbeat-{conn.name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _beat(self, conn) -> None:
        while not self._stop.wait(self.interval):
            result = renew(conn, self.lock, timeout=max(self.interval * 2, min(self.lock.expiry / 2, 30)))
            if result.exit_code == 1 and not self._stop.is_set():
                self.on_lost(conn.name, "the node removed this run's probes: not renewed within "
                             f"{self.lock.expiry:g} s")
                return

    def stop(self) -> None:
        """Closing the connections first cuts off a renewal stuck on a node that stopped answering; one
        still connecting is left to its daemon thread (a renewal after the release touches nothing:
        `touch -c` creates no file in the removed workdir)."""
        self._stop.set()
        for conn in self._conns:
            conn.close()
        deadline = time.monotonic() + 0.5
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
