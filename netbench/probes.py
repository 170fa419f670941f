"""Probe pods on a node, over any Runner (SSH on real clusters and on the lab alike): create them
through the node's own CNI plugins when it has a CNI network (the address then comes from, and is
recorded in, its IPAM), with the pod primitive otherwise; copy the agent, start its echo servers and
iperf3 servers. Removing them is the node lock's work (netbench.runlock): everything here lives in
the run's work directory or is recorded there, before it is made, as the command that removes it.

Every process started here carries NB_RUN=<run id> in its environment, so the node finds it by the
run id alone (probes/runlock.py), even after the orchestrator died.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from netbench import pods, runlock
from netbench.errors import NetbenchError
from netbench.facts import NodeFacts
from netbench.fleet import Connection, Fleet, GroupResult, SshTarget
from netbench.plan import THROUGHPUT_TESTS
from netbench.remote import NODE_PYTHON, NODE_PYTHON_SH, Runner, script

AGENT = f"{runlock.BASE}/agent.py"  # beside the lock: one run at a time uses it
CNI_STATE_DIR = "/run/netbench-cni"  # probes/cni.py's records of the pods it made (STATE_DIR there)
AGENT_SOURCE = Path(__file__).resolve().parents[1] / "probes" / "agent.py"
AGENT_PORT = 17777
IPERF_PORT = 15201
PROBE_PODS = pods.PROBE_PODS


def agent_argv(*args: str) -> list[str]:
    """The agent's command line on a node (remote.NODE_PYTHON: no site-packages, no environment)."""
    return [*NODE_PYTHON, AGENT, *args]


def session_argv(run_id: str, idle_exit: float = 120.0) -> list[str]:
    """The agent's ping session (agent.py session) as a run keeps it open on a node: NB_RUN in its
    environment, as every process of the run has, so the node's lock finds it if the run dies (the
    idle exit is a second net; a session that ended is started afresh by the next ask)."""
    return ["env", f"NB_RUN={run_id}", *agent_argv("session", "--idle-exit", f"{idle_exit:g}")]


class ProbeError(NetbenchError):
    """Probe pods or their servers could not be set up on a node; the text names the node."""

# A directory netbench writes into and runs from must be ours: the node lock made it (mode 700, under
# root's /run); still refuse a symlink or anything another user owns rather than follow it as root.
SAFE_WORKDIR = ('d=$1; if [ -L "$d" ] || [ ! -d "$d" ] || [ "$(stat -c %u "$d")" != "$(id -u)" ]; then '
                'echo "refusing $d: missing, a symlink or not owned by $(id -un)" >&2; exit 3; fi')

# One line of the run's undo list: how to remove what is about to be made (runlock.py runs them).
_UNDO = 'printf \'%s\\n\' "$2" >> "$1/undo"'

@dataclass
class Endpoint:
    """Where a measurement starts or ends: the node itself or one of its probe pods."""

    node: str
    ip: str
    pod: str | None = None  # None: the node's own network namespace (host-host)
    veth: str | None = None  # the host end of the pod's veth (where its packets show on the node)

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.pod, *argv] if self.pod else list(argv)


@dataclass
class NodeProbes:
    node: str
    host: Endpoint
    pods: list[Endpoint] = field(default_factory=list)
    specs: list[pods.PodSpec] = field(default_factory=list)


def record_undo(runner: Runner, workdir: str, what: str, name: str, argv: list[str]) -> None:
    """Before making something outside the work directory: the command that removes it, so the node
    (its watchdog, the run's release) can undo it without the orchestrator."""
    entry = json.dumps({"what": what, "name": name, "argv": argv})
    runner.run(["sh", "-c", _UNDO, "nb-undo", workdir, entry])


# Only when a CNI pod was ever made here (its records' directory exists) does python3 start.
_CNI_RELEASE = (f'd=$1; shift; if [ -d "$d" ]; then exec {NODE_PYTHON_SH} - "$@"; fi; '
                'echo \'{"pods": 0, "processes": 0, "errors": []}\'')


def release_cni_pods(runner: Runner, timeout: float = 30.0) -> dict:
    """DEL every probe pod made through the node's CNI (its address goes back to the IPAM), kill what
    runs in it and remove it; what a plugin refused stays recorded, and clean() fails saying so."""
    result = runner.run(["sh", "-c", _CNI_RELEASE, "nb-cni", CNI_STATE_DIR, "release", "--prefix", pods.PROBE_PREFIX],
                        input=pods.CNI_PROBE.read_text(), timeout=timeout, check=False)
    out = _last_json(result.stdout)
    if not out:
        result.check()  # not the script's answer (the connection, no python3): as any command's failure
    if not result.ok or out.get("errors"):
        raise ProbeError(f"{runner.name}: cannot release probe pods through CNI: "
                         + ("; ".join(out.get("errors") or []) or out.get("error") or result.why))
    return out


def _last_json(text: str) -> dict:
    try:
        out = json.loads(text.strip().splitlines()[-1]) if text.strip() else {}
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def free_addresses(runner: Runner, facts: NodeFacts, count: int) -> list[str]:
    """Addresses for probe pods from the top of the node's pod subnet, skipping any the node knows
    (its neighbour table) or that answer a ping — container runtimes hand out from the bottom. Only a
    ping that got no reply (exit 1) means free: any other failure (no ping, no route) says nothing.
    A pod bridge that is down answers no ping and has no route (the kernel drops its connected route):
    its ports can be reached by no one, so the interfaces and the neighbour table decide alone, and the
    trace goes on to name the down bridge as its verdict."""
    net = ipaddress.ip_network(facts.pod_subnet)
    bridge = facts.interfaces.get(facts.bridge or "")
    ping = bridge is None or bridge.up
    taken = {str(ipaddress.ip_interface(a).ip) for i in facts.interfaces.values() for a in i.addrs}
    neigh = runner.run(["ip", "-j", "neigh", "show"], check=False).stdout
    try:
        taken |= {n["dst"] for n in json.loads(neigh or "[]") if n.get("state") != ["FAILED"]}
    except ValueError:
        pass
    # net.hosts() from the top down, lazily: a /16 has 65534 and the first two usually do
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.prefixlen < 31:
        first, last = first + 1, last - 1
    hosts = (str(ipaddress.IPv4Address(i)) for i in range(last, first - 1, -1))
    candidates = (h for h in hosts if h not in taken)
    chosen: list[str] = []
    while len(chosen) < count:
        # a batch of candidates pinged at once, each on its own channel: a free address costs the whole
        # -W wait, so one after another the wait was paid once per address
        want = count - len(chosen) + 1  # one spare: the top of a subnet is usually free
        batch = list(itertools.islice(candidates, want))
        if not batch:
            break
        probes = _concurrently(lambda ip: runner.run(["ping", "-n", "-q", "-c", "1", "-W", "0.3", ip], check=False,
                                                     timeout=5), batch) if ping else [None] * len(batch)
        for ip, probe in zip(batch, probes, strict=True):
            if probe and probe.exit_code == 0:
                continue  # someone answers: in use
            if probe and probe.exit_code != 1:
                raise ProbeError(f"{facts.name}: cannot tell whether {ip} is free: `ping` exited {probe.exit_code} "
                                 f"({probe.why})")
            chosen.append(ip)
            if len(chosen) == count:
                return chosen
    raise ProbeError(f"{facts.name}: no free address for probe pods in {net}")


def _concurrently(fn, items: list) -> list:
    """fn(item) for every item at once, in threads (SSH channels of one connection run side by side);
    the results in order, the first exception raised as it was."""
    if len(items) < 2:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="probe") as pool:
        return list(pool.map(fn, items))


def upload_agent(runner: Runner) -> None:
    runner.run(["sh", "-c", SAFE_WORKDIR + ' && cat > "$2"', "nb-put", runlock.BASE, AGENT],
               input=AGENT_SOURCE.read_text())


def pod_mtu(facts: NodeFacts) -> int | None:
    """The MTU the node's own pods have: the largest of the pod bridge's and of the pods' veths plugged
    into it (not ours), so a probe pod is what real pods are; subnet.env's only when there is no bridge.
    A bridge left at 1500 on a 1472 overlay then shows in the trace as the mismatch it is."""
    bridge = facts.interfaces.get(facts.bridge or "")
    if bridge is None:
        return facts.pod_mtu
    ports = [i.mtu for i in facts.bridge_ports()]
    return max([bridge.mtu, *ports])


def create_pods(runner: Runner, facts: NodeFacts, count: int, workdir: str) -> list[tuple[pods.PodSpec, Endpoint]]:
    """Probe pods nb-probe-1…: through the node's CNI network when it has one, else on the node's bridge
    with free addresses from its pod subnet. Each is in the run's undo list before it is made."""
    if facts.cni:
        return [cni_pod(runner, facts, name, workdir) for name in PROBE_PODS[:count]]
    if facts.cni_skipped:  # a runtime here would fail too: making pods behind its back would be worse
        raise ProbeError(f"{facts.name}: no usable CNI network configuration: {'; '.join(facts.cni_skipped)}")
    if not (facts.bridge and facts.pod_subnet and facts.bridge_ip):
        raise ProbeError(f"{facts.name}: no pod bridge found (bridge={facts.bridge}, subnet={facts.pod_subnet}); "
                           "set `bridge` and `subnet` for this node in the inventory")
    prefix = ipaddress.ip_network(facts.pod_subnet).prefixlen
    mtu = pod_mtu(facts) or 1500
    made = []
    for name, ip in zip(PROBE_PODS[:count], free_addresses(runner, facts, count), strict=True):
        spec = pods.PodSpec(name=name, bridge=facts.bridge, address=f"{ip}/{prefix}", gateway=facts.bridge_ip,
                            mtu=mtu)
        record_undo(runner, workdir, "pod", name, pods.delete_script(name))
        # the free-address check left a FAILED neighbour entry for this address: drop it, or the first
        # packets to the new pod wait for the kernel to retry resolution
        runner.run(script(pods.create_commands(spec) + [["ip", "neigh", "flush", "to", ip]]))
        made.append((spec, Endpoint(facts.name, ip, name, spec.host_veth)))
    return made


# cni.py is kept in the run's work directory, and the pod's DEL in its undo list, before the ADD runs:
# the node's watchdog or the run's release gives the address back without the orchestrator.
_CNI_ADD = ('d=$1; entry=$2; shift 2; cat > "$d/cni.py" && printf \'%s\\n\' "$entry" >> "$d/undo" && '
            f'exec {NODE_PYTHON_SH} "$d/cni.py" "$@"')


def cni_pod(runner: Runner, facts: NodeFacts, name: str, workdir: str) -> tuple[pods.PodSpec, Endpoint]:
    """One probe pod made as the node's container runtime makes pods: its CNI chain's ADD, in one round
    trip (probes/cni.py); the address is the one the node's IPAM gave."""
    net = facts.cni
    if net.missing:
        raise ProbeError(f"{facts.name}: {net.file} needs CNI plugin(s) {', '.join(net.missing)}, not installed")
    undo = json.dumps({"what": "pod", "name": name, "argv": [*NODE_PYTHON, f"{workdir}/cni.py", "del", "--pod", name]})
    add = ["add", "--conf", net.file, "--pod", name, "--container-id", pods.cni_container_id(name)]
    result = runner.run(["sh", "-c", _CNI_ADD, "nb-cni-add", workdir, undo, *add],
                        input=pods.CNI_PROBE.read_text(), timeout=90, check=False)
    out = _last_json(result.stdout)
    if not out:
        result.check()
    if not result.ok or "address" not in out:
        raise ProbeError(f"{facts.name}: CNI ADD of {name} through {net.file} failed: {out.get('error') or result.why}")
    gateway = out.get("gateway") or facts.bridge_ip
    if not gateway:
        raise ProbeError(f"{facts.name}: {net.file} gave {name} {out['address']} but no gateway")
    spec = pods.PodSpec(name=name, bridge=net.bridge or facts.bridge or "", address=out["address"], gateway=gateway,
                        mtu=int(out.get("mtu") or 1500), veth=out.get("veth") or "")
    return spec, Endpoint(facts.name, spec.ip, name, spec.host_veth)


@dataclass(frozen=True)
class Needs:
    """What a run measures with on each node, so nothing else is made there: probe pods (one for pods
    across nodes, a second for pod-pod-same-node), echo agents (udp_rr), iperf3 servers (throughput),
    and those servers on the node itself too (host-host)."""

    pods: int = len(PROBE_PODS)
    agent: bool = True
    iperf3: bool = True
    host: bool = True

    @classmethod
    def of(cls, scenarios: Iterable[str], tests: Iterable[str]) -> "Needs":
        scenarios, tests = set(scenarios), set(tests)
        pods = 2 if "pod-pod-same-node" in scenarios else 1 if "pod-pod" in scenarios else 0
        return cls(pods=pods, agent="udp_rr" in tests, iperf3=bool(tests & set(THROUGHPUT_TESTS)),
                   host="host-host" in scenarios)


def deploy(runner: Runner, facts: NodeFacts, workdir: str, needs: Needs = Needs()) -> NodeProbes:
    """The probe pods and servers `needs` asks for: agents and iperf3 servers in the pods, and on the
    node itself for the host-host baseline. A node whose roles run no pods (a master) is given
    needs.pods == 0. The node must be held (runlock.acquire): what a dead run left was removed then,
    and nothing of another run is touched."""
    upload_agent(runner)  # send-raw (traces) needs it even when no agent serves
    probes = NodeProbes(node=facts.name, host=Endpoint(facts.name, facts.address))
    for spec, endpoint in create_pods(runner, facts, needs.pods, workdir) if needs.pods else []:
        probes.specs.append(spec)
        probes.pods.append(endpoint)
    serving = ([probes.host] if needs.host else []) + probes.pods
    if serving and (needs.agent or needs.iperf3):
        start_servers(runner, facts.name, workdir, serving, agent=needs.agent, iperf3=needs.iperf3)
    return probes


def start_servers(runner: Runner, node: str, workdir: str, endpoints: list[Endpoint], timeout: float = 10.0,
                  agent: bool = True, iperf3: bool = True) -> dict[str, int]:
    """An agent and/or an iperf3 server per endpoint, started and waited for by the agent on the node in
    one round trip (`agent.py start`): one command per server and per wait was 15 round trips a node.
    Returns the servers' pids; a server that does not come up is named with its log."""
    servers, what = [], {}
    for ep in endpoints:
        tag = ep.pod or "host"
        ready = f"{workdir}/agent-{tag}.ready"
        if agent:
            servers.append({"name": f"agent-{tag}", "ready": ready,
                            "argv": ep.wrap(agent_argv("serve", "--bind", ep.ip, "--port", str(AGENT_PORT),
                                             "--ready-file", ready))})
            what[f"agent-{tag}"] = f"probe agent in {tag} did not start"
        if iperf3:
            servers.append({"name": f"iperf3-{tag}", "check": ep.wrap(["ss", "-Htln", f"sport = :{IPERF_PORT}"]),
                            "argv": ep.wrap(["iperf3", "-s", "-B", ep.ip, "-p", str(IPERF_PORT)])})
            what[f"iperf3-{tag}"] = f"iperf3 server in {tag} not listening on {IPERF_PORT}"
    result = runner.run(agent_argv("start", "--workdir", workdir), timeout=timeout + 20, check=False,
                        input=json.dumps({"servers": servers, "timeout": timeout}))
    out = _last_json(result.stdout)
    if result.ok and "started" in out:
        return out["started"]
    if out.get("failed") in what:
        raise ProbeError(f"{node}: {what[out['failed']]}: {out.get('log') or out.get('why')}")
    raise ProbeError(f"{node}: starting the probe servers failed: {out.get('error') or result.why}")


def clean_nodes(targets: Iterable[SshTarget], accept_new_host_keys: bool = False, force: bool = False,
                transport=Connection) -> GroupResult[dict]:
    """`netbench clean`: what dead runs left on every node (a live run's too with force); per node the
    counts removed (and the holder, when a live run keeps it), or why not."""
    def one(conn) -> dict:
        counts = runlock.clean(conn, force)
        if "busy" in counts:
            return counts  # a live run's CNI pods are its own
        released = release_cni_pods(conn)  # CNI pods no run's undo list named: their addresses go back too
        return {**counts, **{k: counts.get(k, 0) + released.get(k, 0) for k in ("pods", "processes")}}
    with Fleet(targets, accept_new_host_keys, transport=transport) as fleet:
        return fleet.each(one)
