"""Run traces: probe pods on the nodes, captures on every hop of both ends, marked probes crafted
with scapy and sent from the source pod, then correlation and diagnosis.

Probes are ICMP echoes with DF set, a marker in the payload and a unique IP id; an MTU sweep of
larger probes rides in the same capture window, so one trace costs one capture round per pair.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from netbench import cluster, controlplane, firewall, pods, probes, runlock, signals
from netbench.cluster import DATA_PATHS, ClusterNode
from netbench.errors import NetbenchError, UserError
from netbench.facts import NodeFacts
from netbench.flannel import OVERLAY_KINDS, Mode
from netbench.fleet import Connection, Fleet
from netbench.inventory import runs_pods
from netbench.trace import capture, correlate, diagnose, paths, verdict

SWEEP_SIZES = (576, 1000, 1200, 1280, 1350, 1400, 1420, 1450, 1472, 1500, 8950, 9000)


@dataclass
class TraceOptions:
    probes: int = 20
    interval: float = 0.002
    size: int = 84  # IP packet length of the timing probes (ping's default)
    mtu_sweep: bool = True
    host: bool = False  # node to node over the underlay instead of pod to pod


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:  # the inventory names the node by hostname
        return False


def _veth(ep: probes.Endpoint) -> str | None:
    return (ep.veth or pods.host_veth(ep.pod)) if ep.pod else None


def craft(src_ip: str, dst_ip: str, trace_id: int, count: int, size: int, sweep: list[int]):
    """(packets as hex, the timing probes' numbers, sweep number -> size, IP id -> number)."""
    ICMP, IP, _, _, _, Raw = correlate.scapy_layers()
    packets, main, sized, ids = [], [], {}, {}
    plan = [(size, True)] * count + [(s, False) for s in sweep for _ in range(2)]
    for seq, (length, timing) in enumerate(plan):
        ip_id = (trace_id * 7 + seq) & 0xFFFF
        pad = max(0, length - 20 - 8 - 11)
        pkt = IP(src=src_ip, dst=dst_ip, id=ip_id, flags="DF", ttl=64) / ICMP(type=8, id=trace_id, seq=seq) / Raw(
            correlate.marker(trace_id, seq) + b"\0" * pad)
        packets.append(bytes(pkt).hex())
        ids[ip_id] = seq
        if timing:
            main.append(seq)
        else:
            sized[seq] = length
    return packets, main, sized, ids


class Tracer:
    def __init__(self, fleet: Fleet, facts: dict[str, NodeFacts], mode: str | None = None,
                 options: TraceOptions | None = None, leases: dict | None = None,
                 lock: runlock.RunLock | None = None) -> None:
        self.fleet, self.facts = fleet, facts
        self.lock = lock or runlock.RunLock.new()  # a run's own, when the run traces its probe pods
        # a node that lost its renewals has been cleaned by its watchdog: the trace's own failures say so
        self.heartbeat = runlock.Heartbeat(self.lock, lambda node, why: None)
        self.leases = leases  # subnet -> Lease, for the control-plane checks; None: not known
        self.options = options or TraceOptions()
        self.mode = mode or cluster.detect(facts).likely
        self.endpoints: dict[str, probes.Endpoint] = {}
        self.prepared: set[str] = set()

    def prepare(self, nodes: list[str]) -> None:
        """Take each node taking part (refused, NodeBusy, while another run holds one), then the agent
        and one probe pod on each (none in --host mode)."""
        def setup(conn):
            runlock.acquire(conn, self.lock)
            self.heartbeat.add(self.fleet.spare(conn.name))
            probes.upload_agent(conn)
            if self.options.host:
                return probes.Endpoint(conn.name, self.facts[conn.name].address)
            return probes.create_pods(conn, self.facts[conn.name], 1, self.lock.workdir)[0][1]
        self.prepared.update(nodes)  # a node that failed half-way may hold a pod too: close() cleans it
        result = self.fleet.each(setup, nodes)
        self.endpoints.update(result.succeeded)
        busy = {n: e for n, e in result.failed.items() if isinstance(e, runlock.NodeBusy)}
        if busy:
            self.prepared -= set(busy)  # another run's: nothing of this trace there to release
            raise next(iter(busy.values()))
        for name, error in result.failed.items():
            raise NetbenchError(f"{name}: cannot prepare the trace: {error}")

    def close(self) -> None:
        """Release every node prepare touched: all this trace made there goes (shielded: a second
        Ctrl-C or SIGTERM waits for it)."""
        with signals.shielded():
            self.heartbeat.stop()
            self.fleet.each(lambda c: runlock.release(c, self.lock.run_id), sorted(self.prepared))

    def trace(self, src: str, dst: str) -> diagnose.TraceReport:
        fs, fd = self.facts[src], self.facts[dst]
        a, b = self.endpoints[src], self.endpoints[dst]
        expected_mode = self.mode if self.mode in DATA_PATHS else "host-gw"  # routed: what "none" fails to be
        request = paths.expected_hops(expected_mode, fs, fd, _veth(a), _veth(b), self.options.host)
        reply = paths.reply_hops(request)
        extra = {n: [i.name for i in self.facts[n].interfaces.values() if i.kind in OVERLAY_KINDS]
                 for n in {src, dst}}
        points = paths.capture_points(request, extra)
        pod_veths = {_veth(a), _veth(b)}
        for node, ifaces in points.items():  # a device the node lacks or holds down cannot be captured
            have = self.facts[node].interfaces
            points[node] = [i for i in ifaces if (i in have and have[i].up) or i in pod_veths]
        findings = verdict.device_findings(request, self.facts, pod_veths)
        if not self.options.host:
            findings += controlplane.check_pair(src, dst, self.facts, self.leases, self.mode)
        trace_id = random.randint(1, 0xFFFF)
        # what the node's own pods send (the bridge and their veths), and at least what subnet.env says
        mtu = (fs.interfaces[fs.underlay].mtu if self.options.host else probes.pod_mtu(fs)) or 1500
        top = max(mtu, fs.pod_mtu or 0)
        sweep = sorted({s for s in SWEEP_SIZES if s <= top} | {mtu, top}) if self.options.mtu_sweep else []
        packets, main, sized, ids = craft(a.ip, b.ip, trace_id, self.options.probes, self.options.size, sweep)
        workdir = self.lock.workdir

        try:
            # captures and the firewall counters before the probes, on both nodes at once; inside the
            # try, so a capture that fails to start on one node never leaves the others running
            with ThreadPoolExecutor(max_workers=4) as pool:
                started = [pool.submit(capture.start, self.fleet[n], points[n], workdir) for n in points]
                snaps = {n: pool.submit(firewall.snapshot, self.fleet[n]) for n in points}
                for future in started:
                    future.result()
                before = {n: f.result() for n, f in snaps.items()}
            self.fleet[src].run(a.wrap(probes.agent_argv("send-raw", "--interval", str(self.options.interval))),
                                input=json.dumps(packets), timeout=60)
            time.sleep(0.1)  # the last replies are on their way (a LAN's RTT is well under a millisecond)
        finally:
            with ThreadPoolExecutor(max_workers=2) as pool:
                pcaps = dict(zip(points, pool.map(lambda n: capture.stop(self.fleet[n], points[n], workdir), points),
                                 strict=True))
        seen = [s for node, by_iface in pcaps.items() for iface, data in by_iface.items()
                for s in correlate.sightings(node, iface, data, trace_id, ids)]
        report = diagnose.analyse(request, reply, seen, main, sized, fs, fd, self.mode, mtu, findings)
        report.leases_checked, report.lease_source = self.leases is not None, getattr(self.leases, "source", "")
        if all(v.ok for v in report.verdicts):
            return report
        # probes went missing: did a firewall take them? The counters read before the probes, against now
        with ThreadPoolExecutor(max_workers=2) as pool:
            after = dict(zip(points, pool.map(lambda n: firewall.snapshot(self.fleet[n]), points), strict=True))
        blamed = self._firewall(src, dst, a, b, request, before, after)
        if blamed:
            report = diagnose.analyse(request, reply, seen, main, sized, fs, fd, self.mode, mtu, findings + blamed)
        report.leases_checked, report.lease_source = self.leases is not None, getattr(self.leases, "source", "")
        return report

    def _firewall(self, src: str, dst: str, a: probes.Endpoint, b: probes.Endpoint, request: list,
                  before: dict, after: dict) -> list:
        """The rule or policy that dropped the probes: the pod packets where a node forwards them, the
        encapsulated ones where the peer takes them in (and the same for the replies)."""
        fs, fd = self.facts[src], self.facts[dst]
        backend = Mode(self.mode).backend if self.mode in {m.value for m in Mode} else None
        hop_of = {(h.node, h.role): h.iface for h in request}
        checks = []
        if self.options.host and _is_ip(fs.address) and _is_ip(fd.address):
            checks += [(dst, firewall.Packet(fs.address, fd.address, "icmp", iif=fd.underlay), "input"),
                       (src, firewall.Packet(fd.address, fs.address, "icmp", icmp_type="echo-reply",
                                             ct_state="established", iif=fs.underlay), "input")]
        else:
            for node, pkt in ((src, firewall.Packet(a.ip, b.ip, "icmp", iif=hop_of.get((src, "bridge")))),
                              (dst, firewall.Packet(a.ip, b.ip, "icmp", oif=hop_of.get((dst, "bridge")))),
                              (dst, firewall.Packet(b.ip, a.ip, "icmp", icmp_type="echo-reply", ct_state="established",
                                                    iif=hop_of.get((dst, "bridge")))),
                              (src, firewall.Packet(b.ip, a.ip, "icmp", icmp_type="echo-reply", ct_state="established",
                                                    oif=hop_of.get((src, "bridge"))))):
                checks.append((node, pkt, "forward"))
            if backend and backend.port and _is_ip(fs.address) and _is_ip(fd.address):
                checks += [(dst, firewall.Packet(fs.address, fd.address, "udp", dport=backend.port,
                                                 iif=fd.underlay), "input"),
                           (src, firewall.Packet(fd.address, fs.address, "udp", dport=backend.port,
                                                 iif=fs.underlay), "input")]
        found = []
        for node, pkt, hook in checks:
            if node in before and node in after:
                blame = firewall.blame(before[node], after[node], self.options.probes, pkt, hook, node)
                if blame and blame not in found:
                    found.append(blame)
        return found


def trace_pairs(nodes: list[ClusterNode], pod_network: str, pairs: list[tuple[str, str]], options: TraceOptions,
                mode: str | None = None, accept_new_host_keys: bool = False,
                progress=None, transport=Connection,
                read_leases: Callable[[dict[str, NodeFacts]], dict | None] | None = None,
                expiry: float = runlock.DEFAULT_EXPIRY) -> tuple[list[diagnose.TraceReport], dict[str, str]]:
    """Connect, learn facts, prepare the nodes the pairs need, trace each pair; always clean up.
    Returns the reports and, per node, why it could not take part. read_leases gives flannel's leases
    for the control-plane checks (None: unknown); it is asked with the facts, once they are in (the
    nodes may be the leases' source)."""
    correlate.warm_up()  # scapy loads while the nodes are reached
    names = [n.name for n in nodes]
    missing = sorted({x for p in pairs for x in p} - set(names))
    if missing:
        raise UserError(f"no node named {missing[0]!r} in the inventory (nodes: {', '.join(names)})")
    podless = [n for n in nodes if not runs_pods(n.roles) and any(n.name in p for p in pairs)]
    if podless and not options.host:
        n = podless[0]
        raise UserError(f"{n.name}: its roles ({', '.join(n.roles)}) run no pods, so it gets no probe pod; "
                        "trace it node to node with --host")
    with Fleet([n.target for n in nodes], accept_new_host_keys, transport=transport) as fleet:
        node_facts, errors = cluster.gather_facts(fleet, nodes, pod_network)
        failed = {name: str(error) for name, error in errors.items()}
        tracer = Tracer(fleet, node_facts, mode, options, read_leases(node_facts) if read_leases else None,
                        runlock.RunLock.new(expiry))
        involved = sorted({x for p in pairs for x in p} - set(failed))
        reports = []
        try:
            tracer.prepare(involved)
            for src, dst in pairs:
                if src in failed or dst in failed:
                    continue
                if progress:
                    progress(f"trace {src} -> {dst}")
                reports.append(tracer.trace(src, dst))
        finally:
            tracer.close()
    return reports, failed


def trace_probes(fleet: Fleet, facts: dict[str, NodeFacts], endpoints: dict[str, probes.Endpoint],
                 pairs: list[tuple[str, str]], mode: str, leases: dict | None, lock: runlock.RunLock,
                 progress: Callable[[str], None], fail: Callable[[str, Exception], None]) -> list[dict]:
    """A run's traces (run --trace) between its own probe pods, as they are (prepare() would clean them
    away), under its lock; a pair that fails is `fail`ed (where, why) and the others go on. Each report as
    a dict with the run's mode: gates judge traces by it, whatever path they expected."""
    tracer = Tracer(fleet, facts, None if mode in ("mixed", "unknown") else mode, TraceOptions(), leases, lock=lock)
    tracer.endpoints = dict(endpoints)
    reports = []
    for a, b in pairs:
        progress(f"trace {a}->{b}")
        try:
            report = tracer.trace(a, b).as_dict()
        except Exception as exc:  # noqa: BLE001 — one pair's failure does not stop the others
            fail(f"{a}->{b}", exc)
            continue
        report["run_mode"] = mode
        reports.append(report)
    return reports
