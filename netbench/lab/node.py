"""A lab node at run time: a network namespace plus a holder process that owns the node's own mount
and UTS namespaces (its /run, /tmp, hostname). Everything on the node is entered through the holder,
so sshd, the overlay daemon and every command run over SSH see the node exactly as a real one.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import time
from pathlib import Path
from typing import Sequence

from pyroute2 import IPRoute

from netbench.errors import LabError
from netbench.lab.topology import NodeSpec
from netbench.remote import CommandResult

# Directories a node has of its own, bind-mounted over the host's at the standard paths.
# /etc/frr only where FRR is installed: the lab's frr mode needs it, the other modes do not.
# /var/tmp is the node's own too: FRR keeps per-daemon crash-log directories there (/var/tmp/frr).
# /etc/cni and /var/lib/cni where they exist (lab/cni.py makes them for flavours with CNI): each node its
# own network config and host-local store; every other node sees an empty one, never the host's.
PRIVATE_DIRS = {"run": "/run", "tmp": "/tmp", "var-tmp": "/var/tmp", "frr": "/etc/frr", "cni-etc": "/etc/cni",
                "cni-lib": "/var/lib/cni"}
NODE_SYSCTLS = [
    "net.ipv4.ip_forward=1",
    # IPv6 router solicitations and MLD would only add noise to every capture.
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
]


class LabNode:
    def __init__(self, spec: NodeSpec, state_dir: Path, holder_pid: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.dir = state_dir / "nodes" / spec.name
        self.holder_pid = holder_pid

    # -- the holder --------------------------------------------------------------------------
    def start_holder(self, timeout: float = 5.0) -> int:
        """Start the process that owns the node's mount and UTS namespaces; returns its pid."""
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        mounts = []
        for sub, target in PRIVATE_DIRS.items():
            if not Path(target).is_dir():
                continue
            path = self.dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o1777 if sub in ("tmp", "var-tmp") else 0o755)
            mounts.append(["mount", "--bind", str(path), target])
        # bash reads the user's ~/.bashrc for every command sshd runs: the host's (here: pyenv's init,
        # 150 ms) is not a node's, whose default rc returns at once when not interactive
        rc = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".bashrc"
        if rc.is_file():
            own = self.dir / "bashrc"
            own.write_text("# the lab node's own ~/.bashrc (a fresh Debian node's stops here when not interactive)\n"
                           "case $- in *i*) ;; *) return;; esac\n")
            mounts.append(["mount", "--bind", str(own), str(rc)])
        ready = self.dir / "run" / ".nb-node-ready"
        ready.unlink(missing_ok=True)
        body = "\n".join(
            ["set -e", shlex.join(["sysctl", "-qw", *NODE_SYSCTLS])]
            + [shlex.join(m) for m in mounts]
            + [shlex.join(["hostname", self.name]), ": > /run/.nb-node-ready",
               # `exec -a` tags the holder in ps, so a person can tell which node it holds.
               shlex.join(["exec", "-a", f"nb-node:{self.name}", "sleep", "infinity"])]
        )
        # ip netns exec -> unshare -> bash -> sleep all exec in place: the pid stays the holder's.
        with open(self.dir / "log" / "holder.log", "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.spec.netns, "unshare", "--uts", "--", "bash", "-c", body],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise LabError(f"{self.name}: node holder exited ({(self.dir / 'log/holder.log').read_text()[-300:]})")
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: node holder not ready after {timeout:.0f}s")
            time.sleep(0.01)
        self.holder_pid = proc.pid
        return proc.pid

    def alive(self) -> bool:
        if not self.holder_pid:
            return False
        try:
            return os.readlink(f"/proc/{self.holder_pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
        except OSError:
            return False

    # -- running things on the node --------------------------------------------------------
    def enter(self, argv: Sequence[str]) -> list[str]:
        if not self.holder_pid:
            raise LabError(f"{self.name}: node is not running")
        return ["nsenter", "-t", str(self.holder_pid), "-n", "-m", "-u", "--", *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True,
            input: str | None = None) -> CommandResult:
        try:
            proc = subprocess.run(self.enter(argv), input=input, capture_output=True, text=True,
                                  timeout=timeout)
            result = CommandResult(self.name, shlex.join(argv), proc.returncode, proc.stdout, proc.stderr)
        except subprocess.TimeoutExpired as exc:
            result = CommandResult(self.name, shlex.join(argv), 124, str(exc.stdout or ""),
                                   f"timed out after {timeout:.0f}s")
        return result.check() if check else result

    def spawn(self, name: str, argv: Sequence[str]) -> int:
        """Start a long-running daemon on the node, logging to the node's log dir; returns its pid."""
        with open(self.dir / "log" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(self.enter(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        return proc.pid

    def log_tail(self, name: str, lines: int = 5) -> str:
        try:
            return "\n".join((self.dir / "log" / f"{name}.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def ipr(self) -> IPRoute:
        return IPRoute(netns=self.spec.netns, flags=0)  # flags=0: fail, don't create, if it is gone

    def path(self, node_path: str) -> Path:
        """Where a node path (/run/flannel/subnet.env) lives on the host."""
        for sub, target in PRIVATE_DIRS.items():
            if node_path == target or node_path.startswith(target + "/"):
                return self.dir / sub / node_path[len(target) + 1:]
        return Path(node_path)
