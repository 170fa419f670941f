"""SSH to every node (paramiko): one Connection per node, a Fleet that runs a call on many nodes in
parallel with a bound, and a GroupResult mapping node -> result or error (Fabric's model), so one bad
node never sinks the others.

Host keys are verified against known_hosts; unknown keys are refused unless the caller opts in to
accept-new (OpenSSH's accept-new: an unknown host is added, a changed key is always refused); a key
marked @revoked is refused for every host. A damaged known_hosts is a UserError naming file and line.
Every command is an argv list joined with shlex quoting, run with a timeout; non-root users get
`sudo -n` for commands that need privileges.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Generic, Iterable, Sequence, TypeVar

import paramiko

from netbench import signals
from netbench.errors import NetbenchError
from netbench.known_hosts import _HostKeyPolicy, _Revoked, read_known_hosts
from netbench.remote import CommandResult

log = logging.getLogger("netbench.fleet")
T = TypeVar("T")


class NodeError(NetbenchError):
    """Why one node could not do what was asked (unreachable, host key, auth, timeout…)."""

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        super().__init__(f"{node}: {message}")


@dataclass(frozen=True)
class SshTarget:
    """How to reach one node: the inventory's SSH settings resolved for it (node override over the
    defaults, paths absolute). The one place that decides whether a command goes through sudo."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    identity_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    use_agent: bool = True
    sudo: str = "auto"  # auto | always | never
    connect_timeout: float = 10.0
    command_timeout: float = 60.0

    @property
    def uses_sudo(self) -> bool:
        """Privileged commands go through `sudo -n`: always, or (auto) for any user but root."""
        return self.sudo == "always" or (self.sudo == "auto" and self.user != "root")

    @property
    def sudo_prefix(self) -> tuple[str, ...]:
        """Put before a privileged command; `-n` fails at once instead of hanging on a password prompt."""
        return ("sudo", "-n") if self.uses_sudo else ()


class _Ended(Exception):
    """A session's command exited (or its channel closed) instead of answering."""

    def __init__(self, code: int, stderr: str) -> None:
        self.code, self.stderr = code, stderr
        super().__init__(stderr)


class _Session:
    """One command kept running on its own channel: a request line in, an answer line out, for as long
    as the caller asks (Connection.ask). Closing the channel is the command's end of input."""

    def __init__(self, client: paramiko.SSHClient, command: str, timeout: float) -> None:
        self.channel = client.get_transport().open_session(timeout=timeout)
        self.channel.exec_command(command)
        self.answers = self.channel.makefile("rb")
        self.lock = threading.Lock()  # one request at a time: answers come back in order

    def ask(self, request: str, timeout: float) -> str:
        with self.lock:
            self.channel.settimeout(timeout)
            self.channel.sendall(request.encode() + b"\n")
            line = self.answers.readline()
        if not line.endswith(b"\n"):  # its output ended: the command is gone; say how
            self.channel.status_event.wait(2)
            err = self.channel.makefile_stderr("rb").read().decode(errors="replace") if self.channel.closed else ""
            status = self.channel.exit_status  # -1: none came (a signal killed it, or the channel closed)
            how = f"its command exited {status}" if status >= 0 else "killed, or its channel closed"
            raise _Ended(status if status >= 0 else 255,
                         f"the session ended without answering ({how})" + (f": {err.strip()}" if err.strip() else ""))
        return line.decode(errors="replace")

    def close(self) -> None:
        self.channel.close()


class Connection:
    def __init__(self, target: SshTarget, accept_new_host_keys: bool = False) -> None:
        self.target = target
        self.name = target.name
        self.accept_new = accept_new_host_keys
        self._client: paramiko.SSHClient | None = None
        self._sessions: dict[str, _Session] = {}  # command -> its running session (ask)
        read_known_hosts(self.known_hosts)  # a damaged file is said once, up front (exit 2), not per node

    @property
    def known_hosts(self) -> Path:
        return Path(os.path.expanduser(str(self.target.known_hosts)))

    def open(self) -> "Connection":
        t = self.target
        client = paramiko.SSHClient()
        known = read_known_hosts(self.known_hosts)  # afresh: accept-new may have added keys since
        known.install(client)
        client.set_missing_host_key_policy(_HostKeyPolicy(known, self.accept_new))
        try:
            client.connect(
                t.address, port=t.port, username=t.user,
                key_filename=os.path.expanduser(str(t.identity_file)) if t.identity_file else None,
                allow_agent=t.use_agent, look_for_keys=False,
                timeout=t.connect_timeout, banner_timeout=t.connect_timeout, auth_timeout=t.connect_timeout,
            )
        except paramiko.BadHostKeyException as exc:
            if known.is_revoked(exc.key):
                raise NodeError(self.name, self._revoked(exc.key)) from None
            raise NodeError(self.name, f"host key for {t.address} does not match {self.known_hosts} "
                            f"(got {exc.key.get_name()} {exc.key.fingerprint}); refusing to connect") from None
        except _Revoked as exc:
            raise NodeError(self.name, self._revoked(exc.key)) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                ca = (f" (its {known.authorities} @cert-authority line(s) vouch for no host: netbench checks "
                      "plain host keys only)") if known.authorities else ""
                raise NodeError(self.name, f"host key of {t.address} is not in {self.known_hosts}{ca}; verify it "
                                "and add it (ssh-keyscan), or pass --accept-new-host-keys") from None
            raise NodeError(self.name, f"ssh to {t.user}@{t.address}:{t.port} failed: {exc}") from None
        except (socket.timeout, TimeoutError):
            raise NodeError(self.name, f"{t.address}:{t.port} did not answer within {t.connect_timeout:.0f}s") from None
        except OSError as exc:
            raise NodeError(self.name, f"cannot reach {t.address}:{t.port}: {exc.strerror or exc}") from None
        transport = client.get_transport()
        transport.set_keepalive(5)
        # Every command is a few small packets each way (channel open, exec, EOF, exit status); with
        # Nagle on, one of them waits for the node's delayed ACK: 48 ms per command on the lab, 4 ms
        # without (OpenSSH's client sets TCP_NODELAY too).
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client
        return self

    def _revoked(self, key: paramiko.PKey) -> str:
        return (f"host key of {self.target.address} ({key.get_name()} {key.fingerprint}) is marked @revoked in "
                f"{self.known_hosts}; refusing to connect")

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self.open()
        return self._client

    def _wrap(self, argv: Sequence[str], privileged: bool) -> str:
        # `always` means every command, even one that needs no privileges
        needs_sudo = self.target.uses_sudo and (privileged or self.target.sudo == "always")
        return shlex.join([*self.target.sudo_prefix, "--", *argv] if needs_sudo else argv)

    def run(self, argv: Sequence[str], *, timeout: float | None = None, check: bool = True,
            input: str | None = None, privileged: bool = True) -> CommandResult:
        """Run one quoted command; a timeout or lost connection becomes exit code 124/255 with the cause."""
        timeout = timeout or self.target.command_timeout
        command = self._wrap(argv, privileged)
        started = time.monotonic()
        try:
            stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout)
            if input is not None:
                stdin.write(input)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except (socket.timeout, TimeoutError):
            code, out, err = 124, "", f"timed out after {timeout:.0f}s"
            self.close()  # the channel may be wedged; the next call reconnects
        except NodeError as exc:  # reconnecting after a lost connection failed: the node is unreachable
            code, out, err = 255, "", str(exc)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            code, out, err = 255, "", f"ssh connection lost: {exc}"
            self.close()
        log.debug("%s: %s -> %s in %.2fs", self.name, command, code, time.monotonic() - started)
        result = CommandResult(self.name, command, code, out, err)
        return result.check() if check else result

    def ask(self, argv: Sequence[str], request: str, *, timeout: float | None = None,
            privileged: bool = True) -> CommandResult:
        """One request line to a command that keeps running between requests (started on first use, one
        per distinct argv), and its one answer line as stdout. A command that has exited answers with its
        exit code and stderr, and the next ask starts it afresh; timeouts and lost connections as run()."""
        timeout = timeout or self.target.command_timeout
        command = self._wrap(argv, privileged)
        started = time.monotonic()
        session = None
        try:
            session = self._sessions.get(command)
            if session is None or session.channel.exit_status_ready():  # never started, or ended since
                session = self._sessions[command] = _Session(self.client, command, self.target.connect_timeout)
            code, out, err = 0, session.ask(request, timeout), ""
        except _Ended as exc:
            code, out, err = exc.code, "", exc.stderr
            self.end_session(command)
        except (socket.timeout, TimeoutError):
            code, out, err = 124, "", f"timed out after {timeout:.0f}s"
            self.end_session(command)  # its answer may still come: a fresh session cannot mistake it for the next
        except NodeError as exc:
            code, out, err = 255, "", str(exc)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            code, out, err = 255, "", f"ssh connection lost: {exc}"
            self.close()
        log.debug("%s: ask %s %s -> %s in %.2fs", self.name, command, request, code, time.monotonic() - started)
        return CommandResult(self.name, command, code, out, err)

    def end_session(self, command: str | None = None) -> None:
        """Close one session (by its command) or all: their commands see the end of their input and exit."""
        for key in [command] if command else list(self._sessions):
            session = self._sessions.pop(key, None)
            if session is not None:
                session.close()

    def close(self) -> None:
        self._sessions.clear()  # the transport takes their channels with it
        client, self._client = self._client, None  # another thread may close it too (a heartbeat's stop)
        if client is not None:
            client.close()


class GroupResult(dict, Generic[T]):
    """node name -> value, or the exception that node raised."""

    @property
    def succeeded(self) -> dict[str, T]:
        return {k: v for k, v in self.items() if not isinstance(v, BaseException)}

    @property
    def failed(self) -> dict[str, BaseException]:
        return {k: v for k, v in self.items() if isinstance(v, BaseException)}

    @property
    def ok(self) -> bool:
        return not self.failed


class Halted(NodeError):
    """The group this command belonged to was interrupted: no new command starts on the node."""


class _Halting:
    """A connection as the Fleet hands it out (to Fleet.each's workers, by fleet[name]): refuses new
    commands once the group or the whole fleet is interrupted, so interrupted work stops at the
    command it is in."""

    def __init__(self, conn: Connection, *halts: threading.Event) -> None:
        self._conn, self._halts = conn, halts

    def run(self, *args, **kwargs) -> CommandResult:
        self._check()
        return self._conn.run(*args, **kwargs)

    def ask(self, *args, **kwargs) -> CommandResult:
        self._check()
        return self._conn.ask(*args, **kwargs)

    def _check(self) -> None:
        if any(h.is_set() for h in self._halts):
            raise Halted(self._conn.name, "interrupted: no new command is started")

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


class Fleet:
    """Connections to many nodes. `transport` makes one per target: paramiko's `Connection` by default,
    a scripted node in orchestration tests (anything with `open`, `run`, `close`, `name`, `target`)."""

    def __init__(self, targets: Iterable[SshTarget], accept_new_host_keys: bool = False,
                 max_parallel: int = 16, transport: Callable[[SshTarget, bool], Connection] = Connection) -> None:
        self.connections = {t.name: transport(t, accept_new_host_keys) for t in targets}
        self.max_parallel = max_parallel
        self._transport, self._accept_new = transport, accept_new_host_keys
        self._halt = threading.Event()  # interrupt(): every connection refuses new commands

    def __getitem__(self, name: str) -> Connection:
        return _Halting(self.connections[name], self._halt)

    def spare(self, name: str, connect_timeout: float | None = None) -> Connection:
        """A second connection to the node, for work beside the run's own commands (the lock's renewals:
        a renewal that times out closes its connection, and must not cut off a measurement with it).
        connect_timeout: a shorter wait for a node that has stopped answering."""
        target = self.connections[name].target
        if connect_timeout is not None:
            target = replace(target, connect_timeout=min(connect_timeout, target.connect_timeout))
        return self._transport(target, self._accept_new)

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM while threads of the caller's own run commands (measurement steps): no new
        command starts anywhere, and the running ones are cut off (their connections closed), so the
        caller can clean up at once instead of waiting out a long step. resume() before cleaning up."""
        self._halt.set()
        for c in self.connections.values():
            c.close()

    def threads(self, fn: Callable[[T], object], items: Sequence[T], max_workers: int) -> None:
        """fn(item) for every item in threads of the caller's own (measurement steps, which use fleet[name]).
        Ctrl-C or SIGTERM meanwhile interrupts the fleet, so a step that would last minutes is cut off
        and the caller's cleanup starts now (the remote commands die with the probes)."""
        pool = ThreadPoolExecutor(max_workers=min(len(items), max_workers))
        try:
            list(pool.map(fn, items))
        except BaseException:
            self.interrupt()
            with signals.shielded():
                pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def end_sessions(self) -> None:
        """Close every connection's sessions (Connection.ask): nothing of theirs stays on the nodes."""
        for c in self.connections.values():
            c.end_session()

    def resume(self) -> None:
        self._halt.clear()  # the connections reopen on their next command

    @property
    def names(self) -> list[str]:
        return list(self.connections)

    def each(self, fn: Callable[[Connection], T], names: Iterable[str] | None = None,
             timeout: float | None = None) -> GroupResult[T]:
        """Call fn(connection) on many nodes at once; never waits forever on one hung node."""
        chosen = list(names) if names is not None else self.names
        result: GroupResult[T] = GroupResult()
        if not chosen:
            return result
        pool = ThreadPoolExecutor(max_workers=min(self.max_parallel, len(chosen)),
                                  thread_name_prefix="fleet")
        halt = threading.Event()
        futures: dict = {}
        limit = timeout or max(self.connections[n].target.connect_timeout + self.connections[n].target.command_timeout
                               for n in chosen) * 2
        try:
            # submitting is inside the try: an interrupt that lands while workers are being handed out
            # (the first ones already running) must halt them as surely as one during the wait
            for n in chosen:
                futures[pool.submit(fn, _Halting(self.connections[n], halt, self._halt))] = n
            done, pending = wait(futures, timeout=limit)
        except BaseException:
            # Ctrl-C (or SIGTERM turned into an exception) while nodes work: no worker may start another
            # command, and the ones running finish theirs before the caller cleans up — else a worker
            # would create pods on a node right after its cleanup. A second signal waits for that.
            halt.set()
            pool.shutdown(wait=False, cancel_futures=True)
            with signals.shielded():
                wait(futures, timeout=limit)
            raise
        for future in done:
            name = futures[future]
            try:
                result[name] = future.result()
            except Exception as exc:  # noqa: BLE001 — a node's failure is data
                result[name] = exc
        for future in pending:
            result[futures[future]] = NodeError(futures[future], f"no answer within {limit:.0f}s")
        pool.shutdown(wait=False, cancel_futures=True)
        return GroupResult({n: result[n] for n in chosen})

    def connect(self) -> GroupResult[Connection]:
        return self.each(lambda c: c.open())

    def close(self) -> None:
        for c in self.connections.values():
            c.close()

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
