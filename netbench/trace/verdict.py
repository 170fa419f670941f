"""A verdict on a traced path, and how verdicts are ranked: one primary cause (what the path shows,
or the control-plane, device or firewall finding that explains where probes stop), then independent
findings. Pure: no I/O."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netbench.facts import NodeFacts
from netbench.findings import ADVISORY, Finding, hint
from netbench.trace.paths import Hop


@dataclass
class Verdict:
    kind: str  # delivered, no-route, forwarding-disabled, overlay-daemon-down, encap-not-reaching-peer,
    #            encap-blocked, not-on-link, mtu-black-hole, reply-path-missing, rp-filter-drop,
    #            packet-loss, rate-limited, pod-unreachable
    ok: bool
    message: str
    node: str | None = None
    hop: str | None = None
    evidence: list[str] = field(default_factory=list)
    hint: str = ""  # the command a person runs on the node to see it

    @classmethod
    def of(cls, finding: Finding, hop: str | None = None, lead: list[str] | None = None) -> "Verdict":
        return cls(finding.cause, False, finding.message, finding.node, hop or finding.hop,
                   (lead or []) + list(finding.evidence), finding.hint)


# Verdicts the path itself proves: a control-plane finding does not replace them as the cause.
PROVEN = {"forwarding-disabled", "rp-filter-drop", "not-on-link", "no-route", "mtu-black-hole", "device-down",
          "device-missing", "encap-wrong-destination", "reply-path-missing"}
# A firewall finding on the node the path stops at confirms these: the verdict keeps its name and gains
# the rule, its counter and the command to list it.
CONFIRMED_BY_FIREWALL = {"encap-blocked", "encap-not-reaching-peer"}
# Which findings explain a stop best, most direct first; any other finding ranks after these. A daemon
# that is down explains its missing device, so it comes first.
PRIORITY = ("firewall-drop", "overlay-daemon-down", "overlay-daemon-stopped", "overlay-daemon-detached",
            "device-down", "device-missing", "overlay-device-down", "overlay-device-missing", "lease-missing",
            "lease-wrong-address", "lease-stale", "fdb-missing", "fdb-wrong-destination", "vxlan-neighbour-missing",
            "vxlan-neighbour-wrong", "vxlan-route-missing", "vtep-mac-mismatch", "route-missing",
            "route-next-hop-wrong", "neighbour-failed", "underlay-neighbour-failed", "underlay-route-missing",
            "vxlan-config-mismatch", "lease-backend-mismatch", "lease-overlap", "lease-expired", "mtu-mismatch")


def ranked(verdicts: list[Verdict], findings: list[Finding]) -> list[Verdict]:
    """One primary cause, then independent findings. Where the path broke, a certain firewall drop, or
    a finding of the node the stop points at, names the cause better than the path alone can — unless
    the path itself proves its verdict (PROVEN); every other finding follows as its own verdict."""
    if not findings:
        return verdicts
    order = {cause: i for i, cause in enumerate(PRIORITY)}
    findings = sorted(findings, key=lambda f: order.get(f.cause, len(order)))
    # where the path broke: not loss (some probes got through) nor an MTU the small probes do not feel
    broken = next((i for i, v in enumerate(verdicts) if not v.ok and v.kind not in ("packet-loss", "mtu-mismatch")),
                  None)
    primary: Finding | None = None
    if broken is not None:
        stop = verdicts[broken]
        certain = [f for f in findings if f.cause == "firewall-drop" and f.extra.get("certain", True)]
        if certain and stop.kind in CONFIRMED_BY_FIREWALL and certain[0].node == stop.node:
            confirmed = certain[0]
            verdicts = list(verdicts)
            verdicts[broken] = Verdict(stop.kind, False, f"{stop.message}: {confirmed.message}", stop.node, stop.hop,
                                       stop.evidence + list(confirmed.evidence), confirmed.hint)
            findings = [f for f in findings if f is not confirmed]
        elif certain and stop.kind not in PROVEN:
            primary = certain[0]
        elif stop.kind not in PROVEN:
            # what small probes can feel: not an MTU; a stale neighbour entry only on the stop's node
            able = [f for f in findings if f.cause != "mtu-mismatch"]
            near = [f for f in able if f.node == stop.node] or [f for f in able if f.cause not in ADVISORY]
            primary = near[0] if near else None
        if primary is not None:
            lead = stop.evidence[:1] + [f"from the path alone: {stop.kind} ({stop.message})"] + stop.evidence[1:]
            verdicts = verdicts[:broken] + [Verdict.of(primary, stop.hop, lead)] + verdicts[broken + 1:]
    seen = {(v.kind, v.node) for v in verdicts}
    extra = [Verdict.of(f) for f in findings
             if f is not primary and (f.cause, f.node) not in seen and f.cause not in ADVISORY]
    return verdicts + extra


def device_findings(request: list[Hop], facts: dict[str, NodeFacts], created: set[str | None]) -> list[Finding]:
    """A device the path needs that the node lacks or holds down is itself the cause (devices netbench
    created for the trace, the probe pods' veths, are not in the facts and are left out)."""
    found = []
    for hop in request:
        node = facts.get(hop.node)
        if node is None or hop.iface in created:
            continue
        iface = node.interfaces.get(hop.iface)
        if iface is None:
            found.append(Finding("device-missing", hop.node, f"{hop.node} has no {hop.iface}, which the path needs "
                                 f"({hop.role})", hop.label, (f"{hop.node}: no interface {hop.iface}",),
                                 f"ip -d link show {hop.iface}"))
        elif not iface.up:
            found.append(Finding("device-down", hop.node, f"{hop.iface} on {hop.node} is down ({hop.role})",
                                 hop.label, (f"{hop.node} {hop.iface}: {iface.kind}, mtu {iface.mtu}, state DOWN",),
                                 f"ip link show {hop.iface}"))
    return list(dict.fromkeys(found))


def _peer_ip(facts: NodeFacts) -> str:
    """An address inside the node's pod subnet (a pod's), or the node's own when it has none."""
    if not facts.pod_subnet:
        return facts.address
    net = ipaddress.ip_network(facts.pod_subnet)
    return str(net.network_address + min(2, net.num_addresses - 1))


def with_hints(verdicts: list[Verdict], src: NodeFacts, dst: NodeFacts) -> list[Verdict]:
    """Every verdict that says something is wrong carries the command to see it on its node."""
    for v in verdicts:
        if v.hint or v.kind == "delivered":
            continue
        iface = v.hop.split(":")[1] if v.hop and v.hop.count(":") == 2 else None
        peer = src if v.node == dst.name else dst
        v.hint = {
            "no-route": hint("ip", "route", "get", _peer_ip(peer)),
            "reply-path-missing": hint("ip", "route", "get", _peer_ip(peer)),
            "not-on-link": hint("ip", "route", "get", peer.address),
            "forwarding-disabled": hint("sysctl", "net.ipv4.ip_forward"),
            "rp-filter-drop": hint("sysctl", "net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{iface}.rp_filter"),
            "overlay-daemon-down": hint("pgrep", "-af", "flannel"),
            "underlay-unreachable": hint("ip", "neigh", "show", peer.address),
            "packet-loss": hint("tc", "-s", "qdisc", "show"),
            "rate-limited": hint("tc", "qdisc", "show", "dev", iface or ""),
            "mtu-black-hole": hint("ip", "-d", "link", "show", *([iface] if iface else [])),
        }.get(v.kind, hint("nft", "list", "ruleset") if v.kind in ("encap-blocked", "encap-not-reaching-peer",
                                                                   "dropped-at-source", "dropped-at-destination")
              else hint("ip", "-d", "link", "show", *([iface] if iface else [])))
    return verdicts
