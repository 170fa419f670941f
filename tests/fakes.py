"""A fake transport for orchestration tests (Fabric's model): scripted nodes that play the part of
`netbench.fleet.Connection`, so run, trace, clean and doctor can be tested without root, SSH or a lab.

    lab = FakeCluster("vxlan", ["n1", "n2", "n3"])     # each node answers with recorded lab facts
    lab["n2"].fail("start-agent", stderr="OSError: [Errno 98] Address already in use")
    Session(lab.nodes(), lab.pod_network, options, tmp_path, {}, transport=lab.transport).execute()
    assert lab["n2"].pods == {}                          # what the node holds, as it would be left
    assert "clean" in lab["n2"].kinds                    # what it was asked to run, in order

Every command is recognised by what it means — its first words and a key flag, or the `$0` label a
netbench shell snippet carries (`nb-clean`, `nb-put`, `nb-cap-start`, …) — not by its whole text, so
reordered flags keep working. A command the fake does not know raises AssertionError naming its argv
and is kept in `FakeCluster.unknown`; orchestration turns a node's exception into data, so the
`fake_cluster` fixture fails the test at teardown when anything unknown was sent.

A node keeps state as a real one would (probe pods, daemons with pid files, the work directory,
running captures) and the cluster knows which addresses answer, so pings, agent pings and iperf3
runs succeed or fail from what was really set up, and tests can assert on what is left behind.

Scripted trouble, per node (`kind` is the name `Call.kind` shows, e.g. "iperf3", "pod-create"):
  fail(kind, exit_code, stderr)    the command fails (exit 124 via time_out: a timeout, as Connection)
  raise_on(kind, exc)              the command raises (KeyboardInterrupt: Ctrl-C in the middle of it)
  before(kind, fn)                 fn(node, argv) runs first (block, signal the main thread, …)
  stop_answering(after, counting)  after N more commands (of one kind) the connection is lost: exit 255
                                   "ssh connection lost", reconnecting fails, its addresses go silent
  unreachable()                    never answers from the start (open() raises NodeError)
A fault on "start-agent"/"start-iperf3" kills that daemon as it starts (its log holds stderr): on a real
node too the server starts detached, and the failure shows when `agent.py start` waits for it.

The node lock (probes/runlock.py) is played too: `acquire` takes the node (refused, exit 4, while
`lock` names another run — the fake's locks never expire on their own; lock["dead"] = True is one
past its expiry), `release`/`clean` remove what the run made; `expire()` is what the node's
watchdog does when a run stops renewing.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

from netbench import facts, firewall, probes, runlock
from netbench.cluster import ClusterNode
from netbench.fleet import NodeError, SshTarget
from netbench.remote import NODE_PYTHON, NODE_PYTHON_SH, CommandResult

DATA = Path(__file__).parent / "unit" / "data"
POD_NETWORK = "10.1.0.0/16"


def data(name: str) -> str:
    return (DATA / name).read_text()


@dataclass
class Call:
    """One command a node was asked to run, and what it answered."""

    kind: str
    argv: list[str]
    ns: str | None = None  # the probe pod it ran in (ip netns exec), None on the node itself
    input: str | None = None
    timeout: float | None = None
    privileged: bool = True
    exit_code: int | None = None  # None: it raised
    stdout: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {shlex.join(self.argv)} -> {self.exit_code}"


@dataclass
class Pod:
    name: str
    veth: str | None = None
    address: str | None = None  # CIDR
    mtu: int | None = None

    @property
    def ip(self) -> str | None:
        return self.address.split("/")[0] if self.address else None


@dataclass
class Daemon:
    """A server `agent.py start` started (played as `setsid … nb-bg`, one per server): pid file under the
    work directory, like the real one."""

    what: str  # agent | iperf3 | tcpdump
    ns: str | None
    ip: str  # where it listens (the interface, for tcpdump)
    port: int
    pidfile: str
    log: str
    ready_file: str | None = None
    alive: bool = True


@dataclass
class Fault:
    kind: str
    after: int = 0  # matching commands let through first
    times: int | None = 1  # None: every time
    when: Callable[[list[str]], bool] | None = None
    result: tuple[int, str, str] | None = None  # exit code, stdout, stderr
    raises: BaseException | None = None
    hook: Callable[["FakeNode", list[str]], None] | None = None
    timeout_message: bool = False

    def matches(self, kind: str, argv: list[str]) -> bool:
        return kind == self.kind and (self.when is None or self.when(argv))


class UnknownCommand(AssertionError):
    pass


def _pcap(packets: list[tuple[int, bytes]]) -> bytes:
    """What tcpdump -w --time-stamp-precision=nano writes, for IP packets seen on an Ethernet device."""
    if not packets:
        return b""
    out = io.BytesIO()
    writer = PcapWriter(out, nano=True, linktype=1, sync=True)
    for t_ns, ip in packets:
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(ip)
        frame.time = Decimal(t_ns) / 1_000_000_000
        writer.write(frame)
    writer.flush()
    return out.getvalue()


def _agent_args(argv: list[str]) -> list[str] | None:
    """The agent's own arguments when argv runs it (probes.agent_argv), else None."""
    head = probes.agent_argv()
    return argv[len(head):] if argv[:len(head)] == head and len(argv) > len(head) else None


def _opt(argv: list[str], flag: str, default: str | None = None) -> str | None:
    """The value after `flag`, wherever it is."""
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return argv[i + 1]
    return default


class FakeNode:
    """One scripted node; also the connection the transport hands to a Fleet (one per node, kept
    across fleets, so what a run leaves behind is still there for the next `clean`)."""

    def __init__(self, cluster: "FakeCluster", name: str, address: str, raw_facts: dict) -> None:
        self.cluster = cluster
        self.name = name
        self.address = address
        self.target = SshTarget(name, address)
        self.raw_facts = raw_facts
        self.calls: list[Call] = []
        self.opened = 0
        self.connected = False
        self.lost = False  # stopped answering: every command is 255, reconnecting fails
        self.pods: dict[str, Pod] = {}  # probe pods (netns nb-probe-*) and what they hold
        self.daemons: dict[str, Daemon] = {}  # pidfile -> daemon
        self.files: dict[str, str] = {}
        self.workdir = False  # the run's work directory (runlock.acquire made it)
        self.lock: dict | None = None  # the node lock: run_id, owner, started, expiry
        self.undo: list[dict] = []  # the run's undo list
        self.base = False  # /run/netbench exists
        self.captures: set[str] = set()
        self.sessions: list[list[str]] = []  # the argv of every ask (agent sessions)
        self.sessions_ended = 0
        self.seen: dict[str, list[tuple[int, bytes]]] = {}  # iface -> (time, packet) a capture saw
        self._faults: list[Fault] = []
        self._answers_left: int | None = None
        self._answers_counting: str | None = None

    # -- scripting ----------------------------------------------------------------------------
    def fail(self, kind: str, exit_code: int = 1, stderr: str = "injected failure", stdout: str = "", *,
             after: int = 0, times: int | None = 1, when=None) -> "FakeNode":
        self._faults.append(Fault(kind, after, times, when, result=(exit_code, stdout, stderr)))
        return self

    def time_out(self, kind: str, *, after: int = 0, times: int | None = 1, when=None) -> "FakeNode":
        """As Connection reports a command that outlives its timeout: exit 124, the connection closed."""
        self._faults.append(Fault(kind, after, times, when, result=(124, "", ""), timeout_message=True))
        return self

    def raise_on(self, kind: str, exc: BaseException, *, after: int = 0, times: int | None = 1,
                 when=None) -> "FakeNode":
        self._faults.append(Fault(kind, after, times, when, raises=exc))
        return self

    def before(self, kind: str, fn: Callable[["FakeNode", list[str]], None], *, after: int = 0,
               times: int | None = 1, when=None) -> "FakeNode":
        self._faults.append(Fault(kind, after, times, when, hook=fn))
        return self

    def stop_answering(self, after: int = 0, counting: str | None = None) -> "FakeNode":
        """Answer `after` more commands (of kind `counting`, if given), then lose the connection."""
        with self.cluster.lock:
            self._answers_left, self._answers_counting = after, counting
            if after == 0 and counting is None:
                self.lost = True
        return self

    def unreachable(self) -> "FakeNode":
        self.lost = True
        return self

    # -- what happened ------------------------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        return [c.kind for c in self.calls]

    def ran(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 2.0) -> bool:
        """Block until this node has finished `count` commands of `kind` (False when it times out)."""
        with self.cluster.changed:
            return self.cluster.changed.wait_for(
                lambda: len([c for c in self.ran(kind) if c.exit_code is not None]) >= count, timeout)

    def expire(self) -> dict:
        """The watchdog's work when the run holding the node stopped renewing: remove the run."""
        with self.cluster.lock:
            return self.cluster.reap(self)

    @property
    def running(self) -> list[Daemon]:
        return [d for d in self.daemons.values() if d.alive]

    # -- the Connection interface -------------------------------------------------------------
    def open(self) -> "FakeNode":
        if self.lost:
            raise NodeError(self.name, f"cannot reach {self.address}:22: No route to host")
        self.opened += 1
        self.connected = True
        return self

    def close(self) -> None:
        self.connected = False

    def run(self, argv, *, timeout: float | None = None, check: bool = True, input: str | None = None,
            privileged: bool = True) -> CommandResult:
        argv = [str(a) for a in argv]
        timeout = timeout or self.target.command_timeout
        kind, ns, inner = self.cluster.classify(self, argv, input)  # raises on an unknown command
        if kind == "agent-start":
            return self._agent_start(argv, input, timeout, privileged, check)
        call = Call(kind, argv, ns, input, timeout, privileged)
        with self.cluster.lock:
            self.cluster.in_flight += 1
        try:
            return self._run(call, kind, ns, inner, argv, input, check)
        finally:
            with self.cluster.lock:
                self.cluster.in_flight -= 1
                self.cluster.changed.notify_all()

    def ask(self, argv, request: str, *, timeout: float | None = None, privileged: bool = True) -> CommandResult:
        """Connection.ask on the agent's session (probes.session_argv): each request played as the one-off
        agent command it stands for, so faults and hooks on its kind act on it."""
        argv = [str(a) for a in argv]
        self.sessions.append(argv)
        ns = argv[:4] if argv[:3] == ["ip", "netns", "exec"] else []
        inner = argv[len(ns):]
        if inner[:1] == ["env"]:
            inner = inner[1 + next(i for i, a in enumerate(inner[1:]) if "=" not in a):]
        head = probes.agent_argv()
        assert inner[:len(head) + 1] == [*head, "session"], f"not an agent session: {argv!r}"
        return self.run(ns + head + json.loads(request), timeout=timeout, check=False, privileged=privileged)

    def end_session(self, command: str | None = None) -> None:
        self.sessions_ended += 1

    def _run(self, call: Call, kind: str, ns: str | None, inner: list[str], argv: list[str], input: str | None,
             check: bool) -> CommandResult:
        timeout = call.timeout
        with self.cluster.lock:
            self.calls.append(call)
            lost = self._count_answer(kind)
            hook = None if lost else self._take_fault(kind, argv, hook=True)
        if hook:
            hook.hook(self, argv)  # outside the lock: it may block, or wait for another node
        with self.cluster.lock:
            fault = None if lost or self.lost else self._take_fault(kind, argv, hook=False)
        if fault and fault.raises is not None:
            raise fault.raises
        with self.cluster.lock:
            if lost or self.lost:
                code, out, err = 255, "", ("ssh connection lost: Socket is closed" if self.connected else
                                            f"{self.name}: cannot reach {self.address}:22: No route to host")
                self.connected = False
            elif fault and fault.result and not kind.startswith("start-"):
                code, out, err = fault.result
                if fault.timeout_message:
                    err = f"timed out after {timeout:.0f}s"
                    self.connected = False  # Connection closes a wedged channel; the next call reconnects
            else:
                if not self.connected:
                    self.open()  # Connection reconnects on demand, after close() too
                dies = fault.result[2] if fault and fault.result else None
                code, out, err = self.cluster.execute(self, kind, ns, inner, input, dies)
            call.exit_code, call.stdout = code, out
        result = CommandResult(self.name, shlex.join(argv), code, out, err)
        return result.check() if check else result

    def _agent_start(self, argv: list[str], input: str | None, timeout: float, privileged: bool,
                     check: bool) -> CommandResult:
        """`agent.py start` does on the node what one command per server and per wait did: played as
        those commands (setsid … nb-bg, the ready-file wait, ss), so faults and hooks on "start-agent",
        "start-iperf3", "wait-ready" and "ss" act inside it as they would there."""
        workdir, spec = _opt(argv, "--workdir"), json.loads(input or "{}")
        call = Call("agent-start", argv, None, input, timeout, privileged)
        with self.cluster.lock:
            self.calls.append(call)

        def answer(code: int, out: dict) -> CommandResult:
            call.exit_code, call.stdout = code, json.dumps(out) + "\n"
            result = CommandResult(self.name, shlex.join(argv), code, call.stdout, "")
            return result.check() if check else result

        for server in spec["servers"]:
            name = server["name"]
            started = self.run(["setsid", "-f", "sh", "-c", "…", "nb-bg", f"{workdir}/{name}.pid",
                                f"{workdir}/{name}.log", *server["argv"]], check=False)
            if started.exit_code == 255:
                return answer(255, {})
        servers = spec["servers"]
        for server in [s for s in servers if s.get("ready")] + [s for s in servers if not s.get("ready")]:
            name = server["name"]
            if server.get("ready"):
                up = self.run(["sh", "-c", "…", "nb-wait", server["ready"]], check=False)
            else:
                up = self.run(server["check"], check=False)
                up = CommandResult(self.name, "", up.exit_code if up.exit_code == 255 else
                                   (0 if up.stdout.strip() else 1), up.stdout, "")
            if up.exit_code == 255:
                return answer(255, {})
            if not up.ok:
                log = self.files.get(f"{workdir}/{name}.log", "").strip()
                return answer(1, {"error": f"{name} did not start (exited)", "failed": name, "why": "exited",
                                  "log": log[-300:]})
        return answer(0, {"started": {s["name"]: 4242 for s in servers}})

    def _count_answer(self, kind: str) -> bool:
        if self.lost:
            return True
        if self._answers_left is not None and (self._answers_counting in (None, kind)):
            if self._answers_left == 0:
                self.lost = True
                return True
            self._answers_left -= 1
        return False

    def _take_fault(self, kind: str, argv: list[str], hook: bool) -> Fault | None:
        for f in self._faults:
            if (f.hook is not None) != hook or f.times == 0 or not f.matches(kind, argv):
                continue
            if f.after > 0:
                f.after -= 1
                continue
            if f.times is not None:
                f.times -= 1
            return f
        return None


class FakeCluster:
    """Nodes answering with the facts a real lab's nodes gave (tests/unit/data/facts-<mode>.json), and
    the transport factory to pass as `transport=`."""

    def __init__(self, mode: str = "vxlan", names: tuple[str, ...] | list[str] = ("n1", "n2")) -> None:
        recorded = json.loads(data(f"facts-{mode}.json"))
        self.pod_network = POD_NETWORK
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified whenever a command finishes
        self.in_flight = 0
        self.unknown: list[str] = []
        self.nodes_by_name = {n: FakeNode(self, n, recorded["addresses"][n], recorded["raw"][n]) for n in names}

    def __getitem__(self, name: str) -> FakeNode:
        return self.nodes_by_name[name]

    def __iter__(self):
        return iter(self.nodes_by_name.values())

    def nodes(self) -> list[ClusterNode]:
        return [ClusterNode(SshTarget(n.name, n.address)) for n in self]

    def targets(self) -> list[SshTarget]:
        return [n.target for n in self.nodes()]

    def transport(self, target: SshTarget, accept_new_host_keys: bool = False) -> FakeNode:
        node = self.nodes_by_name.get(target.name)
        assert node is not None and node.address == target.address, f"no fake node for {target}"
        return node

    def settle(self, timeout: float = 5.0) -> bool:
        """Block until no node runs a command (threads a run left behind have finished)."""
        with self.changed:
            return self.changed.wait_for(lambda: self.in_flight == 0, timeout)

    # -- who answers where --------------------------------------------------------------------
    def owner(self, ip: str) -> tuple[FakeNode, str | None] | None:
        """The live node (and pod) holding an address, if any answers there."""
        for node in self:
            if node.lost:
                continue
            if ip == node.address:
                return node, None
            for pod in node.pods.values():
                if pod.ip == ip:
                    return node, pod.name
        return None

    def listening(self, what: str, ip: str, port: int) -> Daemon | None:
        found = self.owner(ip)
        if not found:
            return None
        node, ns = found
        return next((d for d in node.running if d.what == what and d.ip == ip and d.port == port and d.ns == ns),
                    None)

    @staticmethod
    def local_ips(node: FakeNode, ns: str | None) -> set[str]:
        if ns:
            return {node.pods[ns].ip} if node.pods[ns].ip else set()
        return {node.address}

    # -- recognising commands -----------------------------------------------------------------
    def classify(self, node: FakeNode, argv: list[str], input: str | None) -> tuple[str, str | None, list[str]]:
        """(kind, pod namespace it runs in, the command without that prefix); unknown commands raise."""
        ns, inner = None, argv
        if argv[:3] == ["ip", "netns", "exec"] and len(argv) > 4:
            ns, inner = argv[3], argv[4:]
        kind = self._kind(inner, input, ns)
        if kind is None:
            message = f"{node.name}: the fake node does not know this command: {argv!r}"
            with self.lock:
                self.unknown.append(message)
            raise UnknownCommand(message)
        return kind, ns, inner

    def _kind(self, argv: list[str], input: str | None, ns: str | None) -> str | None:
        if not argv:
            return None
        word = argv[0]
        if argv == [*NODE_PYTHON, "-"] and input == firewall.PROBE.read_text():
            return "firewall"
        if word == "sh" and len(argv) >= 3 and argv[1] == "-c":
            body, label = argv[2], (argv[3] if len(argv) > 3 else None)
            if label is None and body.rstrip().endswith(f"{NODE_PYTHON_SH} -") and input == facts.PROBE.read_text():
                return "facts"
            if label is None and body.startswith("set -e\n"):
                return self._script_kind(body)
            if label == "nb-runlock" and input == runlock.PROBE.read_text():
                return {"acquire": "acquire", "release": "release", "clean": "clean"}.get(argv[4])
            return {"nb-renew": "renew", "nb-undo": "undo", "nb-put": "upload", "nb-wait": "wait-ready",
                    "nb-cap-start": "capture-start", "nb-cap-stop": "capture-stop", "pod-delete": "pod-delete",
                    "nb-cni": "cni-release"}.get(label)
        if word == "setsid" and "nb-bg" in argv:
            inner = argv[argv.index("nb-bg") + 3:]
            if inner[:3] == ["ip", "netns", "exec"]:
                inner = inner[4:]
            if inner[:1] == ["iperf3"] and "-s" in inner:
                return "start-iperf3"
            if (_agent_args(inner) or [""])[0] == "serve":
                return "start-agent"
            return None
        if _agent_args(argv):
            return {"ping": "agent-ping", "send-raw": "send-raw", "start": "agent-start"}.get(_agent_args(argv)[0])
        if word == "ping":
            return "addr-probe" if "-q" in argv else "ping"
        if word == "iperf3" and "-c" in argv:
            return "iperf3"
        if word == "ss" and "-Htln" in argv:
            return "ss"
        if argv == ["true"]:
            return "alive"
        if word == "cat" and len(argv) == 2:
            return "cat"
        if word == "ip":
            return self._ip_kind(argv)
        return None

    def _script_kind(self, body: str) -> str | None:
        """A `remote.script`: the kind of its first command; every command must be known."""
        lines = [shlex.split(line) for line in body.splitlines()[1:] if line.strip()]
        kinds = [self._ip_kind(c) for c in lines]
        if not lines or None in kinds:
            return None
        return kinds[0]

    @staticmethod
    def _ip_kind(argv: list[str]) -> str | None:
        words = argv[1:]
        if words[:1] == ["-n"]:
            words = words[2:]
        if words[:2] == ["netns", "add"]:
            return "pod-create"
        if words[:2] == ["link", "add"] and "veth" in words:
            return "veth-add"
        if words[:3] == ["link", "set", "dev"]:
            return "set-mtu" if "mtu" in words and "up" not in words else "link-set"
        if words[:2] == ["addr", "add"]:
            return "addr-add"
        if words[:2] == ["route", "add"]:
            return "route-add"
        if words[:2] == ["neigh", "flush"]:
            return "neigh-flush"
        if argv[1:2] == ["-j"] and argv[2:4] == ["neigh", "show"]:
            return "neigh-show"
        return None

    # -- answering ----------------------------------------------------------------------------
    def execute(self, node: FakeNode, kind: str, ns: str | None, argv: list[str], input: str | None,
                dies: str | None) -> tuple[int, str, str]:
        if ns is not None and ns not in node.pods:
            return 1, "", f'Cannot open network namespace "{ns}": No such file or directory'
        handler = getattr(self, "_" + kind.replace("-", "_"), None)
        if handler is None and kind in ("pod-create", "veth-add", "link-set", "set-mtu", "addr-add", "route-add",
                                        "neigh-flush", "neigh-show"):
            return self._ip_commands(node, argv)
        return handler(node, ns, argv, input, dies)

    def _facts(self, node, ns, argv, input, dies):
        return 0, json.dumps(node.raw_facts), ""

    def _firewall(self, node, ns, argv, input, dies):
        """probes/firewall.py on a node with no firewall tools: nothing to blame."""
        return 0, json.dumps({"nft": None, "iptables": []}), ""

    def reap(self, node) -> dict:
        """probes/runlock.py's reap: kill the run's processes, delete its probe pods (and what runs in
        them), remove its work directory and lock; the counts."""
        procs, removed = 0, 0
        for d in node.daemons.values():
            if d.alive:
                d.alive, procs = False, procs + 1
        for name in [p for p in node.pods if p.startswith("nb-probe-")]:
            del node.pods[name]
            removed += 1
        node.daemons = {}
        node.files = {p: t for p, t in node.files.items() if not p.startswith(runlock.BASE + "/")}
        node.workdir, node.lock, node.undo = False, None, []
        node.captures.clear()
        node.seen.clear()
        return {"pods": removed, "processes": procs}

    def _acquire(self, node, ns, argv, input, dies):
        run_id, owner, expiry = argv[5], argv[6], float(argv[7])
        if node.lock is not None and node.lock["run_id"] != run_id and not node.lock.get("dead"):
            holder = dict(node.lock, renewed_s_ago=0.5)
            return 4, json.dumps({"busy": holder}) + "\n", ""
        removed = self.reap(node)  # what a dead run left: nobody holds the node
        node.lock = {"run_id": run_id, "owner": owner, "started": 1796000000.0, "expiry": expiry}
        node.workdir = node.base = True
        return 0, json.dumps({"workdir": f"{runlock.BASE}/{run_id}", "removed": removed}) + "\n", ""

    def _release(self, node, ns, argv, input, dies):
        if node.lock is None or node.lock["run_id"] != argv[5]:
            return 0, json.dumps({"pods": 0, "processes": 0}) + "\n", ""
        return 0, json.dumps(self.reap(node)) + "\n", ""

    def _clean(self, node, ns, argv, input, dies):
        if node.lock is not None and not node.lock.get("dead") and "--force" not in argv:
            holder = dict(node.lock, renewed_s_ago=0.5)
            return 0, json.dumps({"busy": holder, "pods": 0, "processes": 0, "runs": 0}) + "\n", ""
        return 0, json.dumps(self.reap(node)) + "\n", ""

    def _renew(self, node, ns, argv, input, dies):
        return (0, "", "") if node.workdir and argv[4] == f"{runlock.BASE}/{node.lock['run_id']}" else (1, "", "")

    def _undo(self, node, ns, argv, input, dies):
        if not node.workdir:
            return 1, "", f"sh: 1: cannot create {argv[4]}/undo: Directory nonexistent"
        node.undo.append(json.loads(argv[5]))
        return 0, "", ""

    def _cni_release(self, node, ns, argv, input, dies):
        """probes/cni.py release: the recorded facts have no CNI network, so no pod was made through one."""
        return 0, json.dumps({"pods": 0, "processes": 0, "errors": []}) + "\n", ""

    def _upload(self, node, ns, argv, input, dies):
        if not node.base:
            return 3, "", f"refusing {argv[4]}: missing, a symlink or not owned by root"
        node.files[argv[5]] = input or ""
        return 0, "", ""

    def _start(self, node, ns, argv, dies, what):
        pidfile, log = argv[argv.index("nb-bg") + 1], argv[argv.index("nb-bg") + 2]
        inner = argv[argv.index("nb-bg") + 3:]
        pod = None
        if inner[:3] == ["ip", "netns", "exec"]:
            pod, inner = inner[3], inner[4:]
        if not node.workdir:
            return 2, "", f"sh: 1: cannot create {pidfile}: Directory nonexistent"
        if pod is not None and pod not in node.pods:
            node.files[log] = f'Cannot open network namespace "{pod}": No such file or directory\n'
            return 0, "", ""
        ip = _opt(inner, "--bind" if what == "agent" else "-B")
        port = int(_opt(inner, "--port" if what == "agent" else "-p"))
        if what == "agent" and not node.files.get(probes.AGENT):
            dies = dies or f"python3: can't open file '{probes.AGENT}': [Errno 2] No such file or directory"
        if ip not in self.local_ips(node, pod):
            dies = dies or "OSError: [Errno 99] Cannot assign requested address"
        daemon = Daemon(what, pod, ip, port, pidfile, log, _opt(inner, "--ready-file"), alive=dies is None)
        node.daemons[pidfile] = daemon
        node.files[log] = (dies + "\n") if dies else ""
        if daemon.alive and daemon.ready_file:
            node.files[daemon.ready_file] = json.dumps({"ready": True, "bind": ip, "port": port, "pid": 4242}) + "\n"
        return 0, "", ""

    def _start_agent(self, node, ns, argv, input, dies):
        return self._start(node, ns, argv, dies, "agent")

    def _start_iperf3(self, node, ns, argv, input, dies):
        return self._start(node, ns, argv, dies, "iperf3")

    def _wait_ready(self, node, ns, argv, input, dies):
        text = node.files.get(argv[4], "")
        return (0, text, "") if text else (1, "", "")

    def _cat(self, node, ns, argv, input, dies):
        if argv[1] not in node.files:
            return 1, "", f"cat: {argv[1]}: No such file or directory"
        return 0, node.files[argv[1]], ""

    def _ss(self, node, ns, argv, input, dies):
        port = int(argv[-1].rsplit(":", 1)[1])
        lines = [f"LISTEN 0      4096   {d.ip}:{d.port} 0.0.0.0:*" for d in node.running
                 if d.what == "iperf3" and d.ns == ns and d.port == port]
        return 0, "".join(line + "\n" for line in lines), ""

    def _alive(self, node, ns, argv, input, dies):
        return 0, "", ""

    def _addr_probe(self, node, ns, argv, input, dies):
        return self._ping(node, ns, argv, input, dies)

    def _ping(self, node, ns, argv, input, dies):
        dst, count = argv[-1], int(_opt(argv, "-c", "1"))
        answers = self.owner(dst) is not None
        head = f"PING {dst} ({dst}) 56(84) bytes of data.\n"
        lines = "" if "-q" in argv or not answers else "".join(
            f"64 bytes from {dst}: icmp_seq={i} ttl=62 time=0.0{80 + i % 10} ms\n" for i in range(1, count + 1))
        got = count if answers else 0
        summary = (f"\n--- {dst} ping statistics ---\n{count} packets transmitted, {got} received, "
                   f"{100 - 100 * got // count}% packet loss, time {count}ms\n")
        return (0 if answers else 1), head + lines + summary, ""

    def _agent_ping(self, node, ns, argv, input, dies):
        dst, port, count = _opt(argv, "--dst"), int(_opt(argv, "--port")), int(_opt(argv, "--count", "200"))
        answered = self.listening("agent", dst, port) is not None
        # what the agent printed on a lab node, answered or not, stretched to the count asked for
        recorded = json.loads(data("agent-ping.json" if answered else "agent-ping-lost.json"))
        rtts = [recorded["rtt_ns"][i % len(recorded["rtt_ns"])] for i in range(count)] if answered else []
        out = dict(recorded, dst=dst, port=port, count=count, sent=count, received=len(rtts), lost=count - len(rtts),
                   rtt_ns=rtts)
        err = "" if answered else "agent[4242]: ping: no reply to the first 10 requests; giving up\n"
        return 0, json.dumps(out) + "\n", err

    def _iperf3(self, node, ns, argv, input, dies):
        assert "--json" in argv, f"iperf3 without --json: {argv!r}"
        dst, port, bind = _opt(argv, "-c"), int(_opt(argv, "-p", "5201")), _opt(argv, "-B")
        if bind is not None and bind not in self.local_ips(node, ns):
            return 1, json.dumps({"error": "unable to bind to server: Cannot assign requested address"}), ""
        if self.listening("iperf3", dst, port) is None:
            return 1, data("iperf3-refused.json"), ""
        name = "iperf3-udp.json" if "-u" in argv else ("iperf3-tcp-P4.json" if "-P" in argv else "iperf3-tcp.json")
        return 0, data(name), ""

    def _send_raw(self, node, ns, argv, input, dies):
        """The agent sends the trace's probes from the pod: the node's capture on the pod's veth sees them
        leave (nothing further: the fake has no data path), so the trace reads a real pcap back."""
        packets = [bytes.fromhex(h) for h in json.loads(input or "[]")]
        veth = node.pods[ns].veth if ns else None
        if veth in node.captures:
            now = time.time_ns()
            node.seen.setdefault(veth, []).extend((now + i * 1000, p) for i, p in enumerate(packets))
        return 0, json.dumps({"sent": len(packets), "errors": []}) + "\n", ""

    def _capture_start(self, node, ns, argv, input, dies):
        workdir, ifaces = argv[4], argv[7:]
        if not node.workdir or node.lock is None or workdir != f"{runlock.BASE}/{node.lock['run_id']}":
            return 3, "", f"refusing {workdir}: missing, a symlink or not owned by root"
        for i in ifaces:
            pidfile = f"{workdir}/cap-{i}.pid"
            node.daemons[pidfile] = Daemon("tcpdump", None, i, 0, pidfile, f"{workdir}/cap-{i}.log")
        node.captures.update(ifaces)
        return 0, "", ""

    def _capture_stop(self, node, ns, argv, input, dies):
        workdir, ifaces = argv[4], argv[5:]
        for i in ifaces:
            node.daemons.pop(f"{workdir}/cap-{i}.pid", None)
        node.captures.difference_update(ifaces)
        return 0, "".join(f"{i} {base64.b64encode(_pcap(node.seen.pop(i, []))).decode()}\n" for i in ifaces), ""

    def _pod_delete(self, node, ns, argv, input, dies):
        name = argv[4]
        pod = node.pods.pop(name, None)
        if pod:
            for d in node.daemons.values():
                if d.ns == name:
                    d.alive = False
        return 0, "", ""

    def _ip_commands(self, node, argv):
        """A remote.script of ip commands (or one of them): set -e, stops at the first failure."""
        if argv[0] == "sh":
            commands = [shlex.split(line) for line in argv[2].splitlines()[1:] if line.strip()]
        else:
            commands = [argv]
        for command in commands:
            code, err = self._ip(node, command)
            if code:
                return code, "", err
        return 0, "[]" if commands[-1][1:2] == ["-j"] else "", ""

    def _ip(self, node, argv: list[str]) -> tuple[int, str]:
        words, ns = argv[1:], None
        if words[:1] == ["-n"]:
            ns, words = words[1], words[2:]
            if ns not in node.pods:
                return 1, f'Cannot open network namespace "{ns}": No such file or directory'
        kind = self._ip_kind(argv)
        if kind == "pod-create":
            if not any(u.get("what") == "pod" and u.get("name") == words[2] for u in node.undo):
                return 1, f"fake: pod {words[2]} made before its undo was recorded: a kill now would leave it"
            if words[2] in node.pods:
                return 1, f'Cannot create namespace file "/run/netns/{words[2]}": File exists'
            node.pods[words[2]] = Pod(words[2])
        elif kind == "veth-add":
            pod = node.pods.get(_opt(words, "netns"))
            if pod is None:
                return 2, "Error: Peer netns reference is invalid."
            pod.veth, pod.mtu = words[2], int(_opt(words, "mtu", "1500"))
        elif kind == "addr-add" and ns:
            node.pods[ns].address = words[2]
        elif kind == "set-mtu":
            dev, mtu = _opt(words, "dev"), int(_opt(words, "mtu"))
            for pod in node.pods.values():
                if (ns and pod.name == ns) or pod.veth == dev:
                    pod.mtu = mtu
        elif kind is None:
            raise UnknownCommand(f"{node.name}: the fake node does not know this ip command: {argv!r}")
        return 0, ""


@pytest.fixture
def fake_cluster():
    """FakeCluster(mode, names); fails the test if any node was sent a command the fake does not know
    (orchestration turns a node's exception into data, so the AssertionError alone could be swallowed)."""
    made: list[FakeCluster] = []

    def make(mode: str = "vxlan", names=("n1", "n2")) -> FakeCluster:
        made.append(FakeCluster(mode, names))
        return made[-1]
    yield make
    unknown = [m for c in made for m in c.unknown]
    assert not unknown, "commands the fake does not know were sent:\n" + "\n".join(unknown)
