"""The hops a probe should cross, per mode, named from the nodes' facts (plain data, no I/O). A mode's
overlay device, its link kind and its encapsulation come from its declaration (flannel.Mode.backend).

Request path, pod to pod:
  udp      pod veth > bridge > flannel0 (TUN) > eth0 [UDP 8285] | eth0 > flannel0 > bridge > pod veth
  vxlan    pod veth > bridge > flannel.1 > eth0 [VXLAN 8472]    | eth0 > flannel.1 > bridge > pod veth
  routed   pod veth > bridge > eth0                              | eth0 > bridge > pod veth
The reply crosses the same interfaces the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

from netbench.facts import NodeFacts
from netbench.flannel import backend_of


@dataclass(frozen=True)
class Hop:
    node: str
    iface: str
    direction: str  # of the request: "in" (arriving on iface) or "out" (leaving by it)
    role: str  # pod | bridge | overlay | underlay
    encap: str | None = None  # what the request looks like here: None (plain), "udp", "vxlan"

    @property
    def label(self) -> str:
        return f"{self.node}:{self.iface}:{self.direction}"


def overlay_device(facts: NodeFacts, mode: str) -> str | None:
    backend = backend_of(mode)
    if not backend.kind:
        return None
    names = [i.name for i in facts.interfaces.values() if i.kind == backend.kind]
    preferred = backend.device
    return preferred if preferred in names else (names[0] if names else preferred)


def expected_hops(mode: str, src: NodeFacts, dst: NodeFacts, src_veth: str | None, dst_veth: str | None,
                  host: bool = False) -> list[Hop]:
    """The request's hops in order. `host`: node to node over the underlay (no pods, no overlay)."""
    if host:
        return [Hop(src.name, src.underlay, "out", "underlay"), Hop(dst.name, dst.underlay, "in", "underlay")]
    encap = backend_of(mode).encap
    hops = [Hop(src.name, src_veth, "in", "pod"), Hop(src.name, src.bridge, "in", "bridge")]
    if src.name == dst.name:  # same node: the bridge switches it port to port; its own device never sees it
        return [hops[0], Hop(dst.name, dst_veth, "out", "pod")]
    if encap:
        hops.append(Hop(src.name, overlay_device(src, mode), "out", "overlay"))
    hops += [Hop(src.name, src.underlay, "out", "underlay", encap),
             Hop(dst.name, dst.underlay, "in", "underlay", encap)]
    if encap:
        hops.append(Hop(dst.name, overlay_device(dst, mode), "in", "overlay"))
    return hops + [Hop(dst.name, dst.bridge, "out", "bridge"), Hop(dst.name, dst_veth, "out", "pod")]


def reply_hops(request: list[Hop]) -> list[Hop]:
    return [Hop(h.node, h.iface, "out" if h.direction == "in" else "in", h.role, h.encap) for h in reversed(request)]


def capture_points(request: list[Hop], extra: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """node -> interfaces to capture on: every expected hop, plus any overlay device a node has, so a
    packet taking a path the mode does not expect still shows up somewhere."""
    points: dict[str, list[str]] = {}
    for hop in request:
        if hop.iface and hop.iface not in points.setdefault(hop.node, []):
            points[hop.node].append(hop.iface)
    for node, ifaces in (extra or {}).items():
        for iface in ifaces:
            if iface not in points.setdefault(node, []):
                points[node].append(iface)
    return points
