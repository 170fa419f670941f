"""From sightings and facts to what a person wants to know: the path as observed beside the path the
mode promises, per-hop timing, the path MTU, and — when probes vanish — the last hop that saw them
and a named verdict with its evidence. Pure: no I/O."""

from __future__ import annotations

import ipaddress
import statistics
from dataclasses import asdict, dataclass, field

from netbench.facts import NodeFacts, off_link
from netbench.findings import Finding
from netbench.flannel import Mode, backend_of
from netbench.trace.correlate import Sighting
from netbench.trace.paths import Hop
from netbench.trace.verdict import Verdict, ranked, with_hints


@dataclass
class HopReport:
    hop: Hop
    seen: int  # probes whose request was seen here
    replies: int  # replies seen here
    t_p50_us: float | None  # time since the first hop
    t_p90_us: float | None
    step_p50_us: float | None  # time since the previous hop that saw it
    step_p90_us: float | None
    ttl: int | None
    length: int | None
    encap: dict = field(default_factory=dict)


@dataclass
class TraceReport:
    src: str
    dst: str
    mode: str
    probes: int
    hops: list[HopReport]
    verdicts: list[Verdict]
    differences: list[str]
    errors: list[str]  # ICMP errors about probes, where they were seen
    clock: str
    path_mtu: dict = field(default_factory=dict)
    leases_checked: bool = False  # the control-plane checks had flannel's leases to check against
    lease_source: str = ""  # where they came from: etcd, the Node objects, the nodes themselves

    @property
    def delivered(self) -> bool:
        return any(v.kind == "delivered" for v in self.verdicts)

    @property
    def verdict(self) -> Verdict:
        """The finding that matters most: the first failure, else the delivery."""
        return next((v for v in self.verdicts if not v.ok), self.verdicts[0])

    def as_dict(self) -> dict:
        d = asdict(self)
        for h in d["hops"]:
            h["hop"]["label"] = f"{h['hop']['node']}:{h['hop']['iface']}:{h['hop']['direction']}"
        return d


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def clock_offsets(request: list[Hop], sightings: list[Sighting], src: NodeFacts, dst: NodeFacts) -> tuple[dict, str]:
    """ns to subtract from each node's timestamps. Nodes of one boot share a clock (the lab); others
    get an NTP-style estimate from the underlay hops of requests and replies: ((b-a)+(c-d))/2."""
    if src.boot_id and src.boot_id == dst.boot_id:
        return {src.name: 0, dst.name: 0}, "shared clock (one host)"
    under = [h for h in request if h.role == "underlay"]
    if len(under) < 2:
        return {src.name: 0, dst.name: 0}, "one node"
    out_src, in_dst = under[0], under[-1]
    by = {}
    for s in sightings:
        by[(s.node, s.iface, s.kind, s.seq)] = s.t_ns
    samples = []
    for s in sightings:
        if s.node == src.name and s.iface == out_src.iface and s.kind == "request":
            a = s.t_ns
            b = by.get((dst.name, in_dst.iface, "request", s.seq))
            c = by.get((dst.name, in_dst.iface, "reply", s.seq))
            d = by.get((src.name, out_src.iface, "reply", s.seq))
            if None not in (b, c, d):
                samples.append(((b - a) + (c - d)) / 2)
    if not samples:
        return {src.name: 0, dst.name: 0}, "separate clocks, offset unknown (no round trip seen on the underlay)"
    theta = statistics.median(samples)
    return {src.name: 0, dst.name: int(theta)}, f"separate clocks, {dst.name} offset estimated {theta / 1000:+.1f} µs"


def analyse(request: list[Hop], reply: list[Hop], sightings: list[Sighting], main: list[int], sweep: dict[int, int],
            src: NodeFacts, dst: NodeFacts, mode: str, expected_mtu: int | None = None,
            findings: list[Finding] | tuple = ()) -> TraceReport:
    """expected_mtu: what the path should carry (the pod MTU, or the underlay's for a host trace).
    findings: what the control plane, the devices and the firewalls of both nodes say (controlplane,
    device_findings, firewall): the one that explains where probes stop becomes the primary verdict,
    the others follow it as independent findings."""
    offsets, clock = clock_offsets(request, sightings, src, dst)
    at: dict[tuple[str, str, str], dict[int, Sighting]] = {}
    for s in sightings:
        at.setdefault((s.node, s.iface, s.kind), {})[s.seq] = s
    main_set = set(main)

    def seen(hop: Hop, kind: str, seqs=main_set) -> dict[int, Sighting]:
        return {q: s for q, s in at.get((hop.node, hop.iface, kind), {}).items() if q in seqs}

    hops: list[HopReport] = []
    first = seen(request[0], "request") if request else {}
    prev: dict[int, Sighting] = first
    for hop in request:
        here = seen(hop, "request")
        t = [(s.t_ns - offsets[s.node] - (first[q].t_ns - offsets[first[q].node])) / 1000
             for q, s in here.items() if q in first]
        step = [(s.t_ns - offsets[s.node] - (prev[q].t_ns - offsets[prev[q].node])) / 1000
                for q, s in here.items() if q in prev]
        sample = next(iter(here.values()), None)
        hops.append(HopReport(hop, len(here), len(seen(hop, "reply")), _pct(t, 50), _pct(t, 90), _pct(step, 50),
                              _pct(step, 90), sample.ttl if sample else None,
                              int(statistics.median(s.length for s in here.values())) if here else None,
                              sample.encap if sample else {}))
        if here:
            prev = here

    differences = _differences(hops, sightings, request, main_set)
    errors = sorted({f"{s.node}:{s.iface}: {s.error}" for s in sightings if s.kind == "error"})
    verdicts = _verdicts(request, reply, hops, seen, len(main), src, dst, mode, sightings)
    path_mtu = _path_mtu(request, reply, seen, sweep, expected_mtu or src.pod_mtu, src, sightings)
    # a black hole is only a black hole on a path that delivers every small probe: with random loss
    # the two copies of one size can both vanish, and that is loss, not MTU
    if path_mtu.get("black_hole") and not all(v.ok for v in verdicts):
        path_mtu["black_hole"] = None
    if path_mtu.get("black_hole"):
        verdicts.insert(0, Verdict("mtu-black-hole", False, path_mtu["black_hole"]["message"],
                                   path_mtu["black_hole"]["node"], path_mtu["black_hole"]["hop"],
                                   path_mtu["black_hole"]["evidence"]))
    elif _mtu_short(path_mtu, verdicts):
        verdicts.append(_mtu_mismatch(path_mtu, src, request))
    verdicts = _wrong_destination(hops, dst, mode) + verdicts
    verdicts = ranked(verdicts, list(findings))
    verdicts = with_hints(verdicts + _shaping(src, dst), src, dst)
    return TraceReport(src.name, dst.name, mode, len(main), hops, verdicts, differences, errors, clock, path_mtu)


def _differences(hops: list[HopReport], sightings: list[Sighting], request: list[Hop], main: set[int]) -> list[str]:
    out = []
    expected = {(h.node, h.iface) for h in request}
    for h in hops:
        if h.seen == 0:
            out.append(f"expected hop {h.hop.label} saw no probe")
        elif h.hop.encap and h.encap.get("type") != h.hop.encap:
            out.append(f"{h.hop.label}: expected {h.hop.encap} encapsulation, saw {h.encap.get('type') or 'plain'}")
        elif not h.hop.encap and h.encap:
            out.append(f"{h.hop.label}: expected the plain pod packet, saw {h.encap['type']} encapsulation")
    unexpected = sorted({f"{s.node}:{s.iface}" for s in sightings
                         if s.kind == "request" and s.seq in main and (s.node, s.iface) not in expected})
    out += [f"unexpected hop {u}: the request went through it" for u in unexpected]
    return out


def _verdicts(request, reply, hops, seen, n, src: NodeFacts, dst: NodeFacts, mode, sightings) -> list[Verdict]:
    back = seen(reply[-1], "reply") if reply else {}
    if len(back) == n:
        return [Verdict("delivered", True, f"all {n} probes crossed {len(request)} hops and their replies came back")]
    if back:
        lost = 100 * (n - len(back)) / n
        where = _loss_point(request, reply, seen, n)
        return [Verdict("delivered", True, f"{len(back)} of {n} replies came back"),
                Verdict("packet-loss", False, f"{lost:.0f}% of probes lost{where[0]}", where[1], where[2],
                        _loss_evidence(src, dst))]
    host = all(h.role == "underlay" for h in request)
    reached = [i for i, h in enumerate(hops) if h.seen]
    if not reached:
        what = "node" if host else "pod"
        return [Verdict(f"{what}-unreachable", False, f"no probe was seen even at the first hop {request[0].label}",
                        src.name, request[0].label)]
    last = reached[-1]
    if last == len(request) - 1:
        return [_reply_lost(request, reply, seen, src, dst, mode, sightings, host)]
    stop, nxt = request[last], request[last + 1]
    verdict = _request_lost(stop, nxt, src, dst, mode, sightings, host)
    verdict.evidence.insert(0, f"last hop that saw the probes: {stop.label}; next expected: {nxt.label}")
    return [verdict]


def _request_lost(stop: Hop, nxt: Hop, src: NodeFacts, dst: NodeFacts, mode: str, sightings,
                  host: bool = False) -> Verdict:
    peer_subnet = dst.pod_subnet or "?"
    errors = sorted({s.error for s in sightings if s.kind == "error" and s.error})
    if host:  # node to node: no pods, no overlay; only the underlay can be at fault
        return Verdict("underlay-unreachable", False, f"{src.name} cannot reach {dst.name} ({dst.address}) over the "
                       f"underlay: last seen at {stop.label}", dst.name if stop.node == src.name else src.name,
                       stop.label, errors)
    route = src.route_to(str(ipaddress.ip_network(peer_subnet)[2])) if dst.pod_subnet else None
    if stop.node == src.name and (route is None or route.dst == "default") and mode != "udp" \
            and src.ip_forward and stop.role in ("pod", "bridge", "underlay"):
        # on a real node a default route sends the packets out anyway, towards a gateway that does
        # not know pod subnets: the missing route is still the cause, on the source node
        if mode == "host-gw" and off_link(src, dst.address):
            return Verdict("not-on-link", False, f"host-gw needs {dst.name} ({dst.address}) on {src.name}'s own L2 "
                           "segment; it is not, so the route cannot exist", src.name, stop.label,
                           [f"no connected subnet of {src.name} holds {dst.address}"] + errors)
        return _no_route(src, dst, peer_subnet, route, stop, errors)
    if nxt.node == stop.node == src.name and stop.role in ("pod", "bridge"):
        if not src.ip_forward:
            return Verdict("forwarding-disabled", False, f"{src.name} does not forward: net.ipv4.ip_forward=0",
                           src.name, stop.label, ["sysctl net.ipv4.ip_forward = 0"] + errors)
        if mode == "udp" and not src.has_daemon("flanneld", "flannel_udp"):
            return Verdict("overlay-daemon-down", False, f"no flannel (udp) daemon runs on {src.name}: nothing "
                           f"reads {Mode.udp.device}, so nothing crosses to the peer", src.name, stop.label,
                           [f"route: {route or 'none'}", "no flanneld/flannel_udp process"] + errors)
        if route is None or route.dst == "default":  # only udp gets here: the branch above took the others
            return _no_route(src, dst, peer_subnet, route, stop, errors)
        if route.via and not src.connected(route.via) and "onlink" not in str(route):
            return Verdict("not-on-link", False, f"next hop {route.via} is not on any of {src.name}'s links",
                           src.name, stop.label, [str(route)] + errors)
        return Verdict("dropped-at-source", False, f"{src.name} routes {peer_subnet} via {route} but the probes "
                       f"never left by {nxt.iface}", src.name, stop.label, errors)
    if stop.node == src.name and nxt.node == src.name:  # left the overlay device, not the underlay
        return Verdict("overlay-daemon-down", False, f"probes entered {stop.iface} on {src.name} but were never "
                       f"sent out encapsulated by {nxt.iface}", src.name, stop.label, errors)
    if stop.node == src.name and nxt.node == dst.name:
        blocked = _firewall(dst, mode)
        return Verdict("encap-not-reaching-peer", False, f"packets left {src.name} by {stop.iface} but never "
                       f"arrived on {dst.name}'s {nxt.iface}", dst.name, stop.label, blocked + errors)
    # on the destination node
    if stop.role == "underlay" and nxt.role == "overlay":
        blocked = _firewall(dst, mode)
        if mode == "udp" and not dst.has_daemon("flanneld", "flannel_udp"):
            return Verdict("overlay-daemon-down", False, f"no flannel (udp) daemon runs on {dst.name} to receive "
                           f"UDP {Mode.udp.backend.port}", dst.name, stop.label, blocked + errors)
        return Verdict("encap-blocked", False, f"encapsulated packets reach {dst.name}'s {stop.iface} but are not "
                       f"accepted: nothing comes out of {nxt.iface}", dst.name, stop.label,
                       (blocked or ["no firewall rule found: the overlay does not take them"]) + errors)
    if not dst.ip_forward:
        return Verdict("forwarding-disabled", False, f"{dst.name} does not forward: net.ipv4.ip_forward=0",
                       dst.name, stop.label, ["sysctl net.ipv4.ip_forward = 0"] + errors)
    rp = _rp_filter(dst, stop.iface, src.pod_subnet)
    if rp:
        return Verdict("rp-filter-drop", False, f"{dst.name} drops the probes by reverse-path filtering on "
                       f"{stop.iface}", dst.name, stop.label, rp + errors)
    return Verdict("dropped-at-destination", False, f"probes reached {stop.label} but not {nxt.label}", dst.name,
                   stop.label, errors)


def _reply_lost(request, reply, seen, src: NodeFacts, dst: NodeFacts, mode, sightings, host) -> Verdict:
    """Requests arrived, replies did not come back. Replies travel from dst to src, so once they have
    left dst the request-path reasoning applies with the roles swapped."""
    seen_reply = [i for i, h in enumerate(reply) if seen(h, "reply")]
    evidence = [f"requests reached {request[-1].label}; replies last seen at "
                f"{reply[seen_reply[-1]].label if seen_reply else 'no hop'}"]
    if seen_reply and seen_reply[-1] < len(reply) - 1:
        stop, nxt = reply[seen_reply[-1]], reply[seen_reply[-1] + 1]
        if stop.node == src.name or nxt.node == src.name or (stop.role == "underlay" and nxt.role == "underlay"):
            v = _request_lost(stop, nxt, dst, src, mode, sightings, host)
            v.message = "replies: " + v.message
            v.evidence = evidence + v.evidence
            return v
    last = reply[seen_reply[-1]].label if seen_reply else request[-1].label
    if host:
        return Verdict("reply-path-missing", False, f"{dst.name} does not answer {src.name} over the underlay",
                       dst.name, last, evidence)
    route = dst.route_to(str(ipaddress.ip_network(src.pod_subnet)[2])) if src.pod_subnet else None
    if route is None or route.dst == "default":
        return Verdict("reply-path-missing", False, f"{dst.name} answers but has no route back to {src.name}'s pod "
                       f"subnet {src.pod_subnet} (asymmetric routing)", dst.name, last,
                       evidence + [f"{dst.name} routes: {', '.join(str(r) for r in dst.routes)}"])
    return Verdict("reply-path-missing", False, f"replies did not leave {dst.name}", dst.name, last,
                   evidence + [f"{dst.name} route back: {route}"])


def _loss_point(request, reply, seen, n) -> tuple[str, str | None, str | None]:
    path = [(h, "request") for h in request] + [(h, "reply") for h in reply]
    prev = n
    for hop, kind in path:
        count = len(seen(hop, kind))
        if count < prev:
            return f" between the hop before {hop.label} ({kind}) and it", hop.node, hop.label
        prev = count
    return "", None, None


def _no_route(src: NodeFacts, dst: NodeFacts, peer_subnet: str, route, stop, errors: list[str]) -> Verdict:
    return Verdict("no-route", False, f"{src.name} has no route to {dst.name}'s pod subnet {peer_subnet} "
                   + ("(only its default route)" if route else "(the seed's broken cluster)"), src.name,
                   stop.label, [f"{src.name} routes: {', '.join(str(r) for r in src.routes) or 'none'}"] + errors)


def _loss_evidence(src: NodeFacts, dst: NodeFacts) -> list[str]:
    ev = []
    for f in (src, dst):
        for line in f.nft.splitlines():
            if "numgen random" in line and "drop" in line:
                ev.append(f"{f.name} nftables: {line.strip()}")
        for q in f.qdiscs:
            if q.get("kind") == "netem":
                ev.append(f"{f.name} {q.get('dev')}: netem {q.get('options', {})}")
    return ev


def _firewall(node: NodeFacts, mode: str) -> list[str]:
    port = backend_of(mode).port
    if not port:
        return []
    return [f"{node.name} nftables: {line.strip()}" for line in node.nft.splitlines()
            if str(port) in line and "drop" in line]


def _rp_filter(node: NodeFacts, iface: str, src_subnet: str | None) -> list[str]:
    value = max(int(node.rp_filter.get("all", "0") or 0), int(node.rp_filter.get(iface, "0") or 0))
    if value != 1 or not src_subnet:
        return []
    back = node.route_to(str(ipaddress.ip_network(src_subnet)[2]))
    if back is not None and back.dev == iface:
        return []
    return [f"rp_filter=1 (strict) on {node.name} {iface}", f"route back to {src_subnet}: {back or 'none'}"]


def _path_mtu(request, reply, seen, sweep: dict[int, int], expected: int | None, src: NodeFacts, sightings) -> dict:
    if not sweep:
        return {}
    delivered = [size for seq, size in sweep.items() if seen(reply[-1], "reply", {seq})]
    refused = [size for seq, size in sweep.items() if not delivered or size > max(delivered)]
    largest = max(delivered) if delivered else None
    result = {"sizes": sorted(set(sweep.values())), "largest_delivered": largest, "expected_mtu": expected}
    if largest is None or not refused or expected is None or largest >= expected:
        return result
    big = min(s for s in refused if s > largest)
    big_seqs = {q for q, s in sweep.items() if s == big}
    told = [s for s in sightings if s.kind == "error" and s.seq in big_seqs and "fragmentation" in (s.error or "")]
    if told:
        result["signalled"] = told[0].error
        return result
    last, vanished = None, request[0]
    for i, hop in enumerate(request):
        if seen(hop, "request", big_seqs):
            last, vanished = hop, request[min(i + 1, len(request) - 1)]
    result["black_hole"] = {
        "node": vanished.node, "hop": last.label if last else None,
        "message": f"packets of {big} bytes vanish after {last.label if last else 'the first hop'} without an ICMP "
                   f"'fragmentation needed': path MTU {largest} < expected MTU {expected}",
        "evidence": [f"delivered sizes up to {largest}; {big} bytes last seen at {last.label if last else '-'}"],
    }
    return result


def _shaping(src: NodeFacts, dst: NodeFacts) -> list[Verdict]:
    out = []
    for f in (src, dst):
        for q in f.qdiscs:
            if q.get("kind") in ("tbf", "netem") and q.get("dev") in (f.underlay, f.bridge):
                rate = q.get("options", {}).get("rate")  # tc -j reports bytes per second
                at = f" at {rate * 8 / 1e6:g} Mbit/s" if isinstance(rate, (int, float)) else ""
                out.append(Verdict("rate-limited", True, f"{f.name} {q['dev']} is shaped by {q['kind']}{at}",
                                   f.name, f"{f.name}:{q['dev']}:out",
                                   [str(q.get("options", {}))]))
    return out


def _mtu_short(path_mtu: dict, verdicts: list[Verdict]) -> bool:
    largest, expected = path_mtu.get("largest_delivered"), path_mtu.get("expected_mtu")
    return bool(largest and expected and largest < expected and all(v.ok for v in verdicts))


def _mtu_mismatch(path_mtu: dict, src: NodeFacts, request: list[Hop]) -> Verdict:
    largest, expected = path_mtu["largest_delivered"], path_mtu["expected_mtu"]
    evidence = [f"don't-fragment sizes tried: {', '.join(map(str, path_mtu['sizes']))}; largest delivered {largest}"]
    if path_mtu.get("signalled"):
        evidence.append(f"ICMP: {path_mtu['signalled']}")
    where = src.bridge or "the pod bridge"
    return Verdict("mtu-mismatch", False, f"pods on {src.name}'s {where} send {expected} bytes but the path carries "
                   f"{largest}: don't-fragment packets over {largest} are refused", src.name,
                   request[0].label if request else None, evidence, f"ip link show {where}")


def _addresses(node: NodeFacts) -> set[str]:
    """The node's own addresses: the inventory's (an IP or a hostname) and every IPv4 on its interfaces."""
    return {node.address} | {a.split("/")[0] for i in node.interfaces.values() for a in i.addrs}


def _wrong_destination(hops: list[HopReport], dst: NodeFacts, mode: str) -> list[Verdict]:
    """Encapsulated probes leaving the source for another address than the peer's: sent to the wrong node."""
    for h in hops:
        outer = h.encap.get("outer_dst")
        if h.hop.node != dst.name and h.hop.role == "underlay" and outer and outer not in _addresses(dst):
            return [Verdict("encap-wrong-destination", False, f"{h.hop.node} sends the probes for {dst.name} to "
                            f"{outer}, not to {dst.name}'s address {dst.address}", h.hop.node, h.hop.label,
                            [f"{h.hop.label}: {h.encap.get('type')} {h.encap.get('outer_src')}→{outer} port "
                             f"{h.encap.get('port')}", f"{dst.name} address: {dst.address}"],
                            f"ip route get {dst.pod_subnet.split('/')[0] if dst.pod_subnet else dst.address}")]
    return []
