"""The routed modes: host-gw routes each peer's subnet via the peer itself; static and frr via the peer
or an on-link router. The next hop must be resolvable (not FAILED/INCOMPLETE)."""

from __future__ import annotations

from netbench.controlplane.common import Cluster, first_host
from netbench.facts import off_link
from netbench.findings import Finding, hint


def pair(c: Cluster, src: str, dst: str) -> list[Finding]:
    f, d = c.facts[src], c.facts[dst]
    subnet, probe = d.pod_subnet, first_host(d.pod_subnet)
    route = f.route_to(subnet)
    evidence = f"ip route get {probe}: {route or 'no route'}"
    look = hint("ip", "route", "get", probe)
    if route is None or route.dst == "default" or route.dev == f.bridge:
        why = ""
        if c.mode == "host-gw" and off_link(f, d.address):
            why = f": {dst} at {d.address} is not on {src}'s L2 segment, so host-gw cannot route to it"
        return [Finding("route-missing", src, f"{src} has no route to {dst}'s pod subnet {subnet}{why}", peer=dst,
                        evidence=(evidence,), hint=look)]
    via = route.via
    other = c.node_at(via)
    if c.mode == "host-gw":
        right = via == d.address
    else:
        right = via == d.address or (via is not None and other is None and (route.onlink or f.connected(via)))
    if not right:
        what = (f"{other}'s address" if other else "not on-link" if via and not f.connected(via) and not route.onlink
                else "a router" if via else "no next hop")
        expected = f"{dst} at {d.address}" + ("" if c.mode == "host-gw" else " or an on-link router")
        return [Finding("route-next-hop-wrong", src, f"{src} routes {dst}'s pod subnet {subnet} via {via or route.dev} "
                        f"({what}), not {expected}", hop=route.dev, peer=dst, evidence=(evidence,), hint=look,
                        extra={"via": via, "expected": d.address})]
    neigh = f.neighbour(via, route.dev)
    if neigh and neigh.failed:
        return [Finding("neighbour-failed", src, f"{src} cannot resolve the next hop {via} on {route.dev} "
                        f"({neigh.state}) for {dst}'s pod subnet {subnet}", hop=route.dev, peer=dst,
                        evidence=(f"neighbour {neigh}", evidence),
                        hint=hint("ip", "neigh", "show", via, "dev", str(route.dev)))]
    return []
