"""Control-plane checks: does each node's kernel and overlay hold what flannel's leases say it should?

Pure: NodeFacts (as `netbench.facts` builds them), a lease table (subnet -> Lease, from any source)
and the cluster's mode in; findings out. `check` looks at every node and every peer (what `doctor`
lists); `check_pair` only at what the path src -> dst and back relies on (what `trace` ranks).
Leases None means they could not be read: lease checks are skipped, the rest still runs.

Causes: lease-missing, lease-wrong-address, lease-stale, lease-overlap, lease-expired, lease-sources-disagree,
lease-backend-mismatch; overlay-device-missing, overlay-device-down, overlay-daemon-down,
overlay-daemon-stopped, overlay-daemon-detached, route-missing (udp, routed); vxlan-route-missing,
vxlan-neighbour-missing, vxlan-neighbour-wrong, fdb-missing, fdb-wrong-destination, vtep-mac-mismatch,
vxlan-config-mismatch; route-next-hop-wrong, neighbour-failed; underlay-route-missing,
underlay-neighbour-failed; mtu-mismatch; pod-veth-not-in-bridge (doctor only: probe pods'
veths are netbench's own, so a trace's path never holds another pod's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from netbench.controlplane import bridge, mtu, overlay, routed
from netbench.controlplane import leases as lease_checks
from netbench.controlplane.common import Cluster
from netbench.facts import NodeFacts
from netbench.findings import Finding

if TYPE_CHECKING:
    from netbench.routes.leases import Lease

ROUTED = ("host-gw", "static", "frr")


def _node(c: Cluster, node: str) -> list[Finding]:
    found = mtu.node(c, node) + lease_checks.backend(c, node)
    if c.facts[node].pod_subnet:
        found += lease_checks.for_subnet(c, node, node)
    if c.flannel_mode and c.flannel_mode.backend.kind:  # an overlay: udp's TUN, vxlan's device
        found += overlay.device(c, node)
    if c.mode == "udp":
        found += overlay.udp_daemon(c, node)
    if c.mode == "vxlan":
        found += overlay.vtep(c, node)
    return found


def _pair(c: Cluster, src: str, dst: str) -> list[Finding]:
    found = lease_checks.for_subnet(c, src, dst)
    if c.mode == "udp":
        found += overlay.udp_pair(c, src, dst)
    elif c.mode == "vxlan":
        found += overlay.vxlan_pair(c, src, dst)
    elif c.mode in ROUTED:
        found += routed.pair(c, src, dst)
    return found + mtu.pair(c, src, dst)


def check(facts: Mapping[str, NodeFacts], leases: Mapping[str, "Lease"] | None, mode: str) -> list[Finding]:
    """Every inconsistency between the nodes' control planes, the leases and the MTUs, node by node."""
    c = Cluster(facts, leases, mode)
    found = lease_checks.table(c) + (overlay.vxlan_config(c) if mode == "vxlan" else [])
    for node in sorted(facts):
        found += _node(c, node) + bridge.ports(c, node)
        for peer in c.peers(node):
            found += _pair(c, node, peer)
    return _ordered(found)


def check_pair(src: str, dst: str, facts: Mapping[str, NodeFacts], leases: Mapping[str, "Lease"] | None,
               mode: str) -> list[Finding]:
    """What the path src -> dst and back relies on: both nodes, each one's entries for the other."""
    c = Cluster(facts, leases, mode)
    pair = {src, dst}
    found = lease_checks.table(c, only=pair) + (overlay.vxlan_config(c, only=pair) if mode == "vxlan" else [])
    for node in (src, dst):
        found += _node(c, node)
    for a, b in ((src, dst), (dst, src)):
        if c.facts[b].pod_subnet:
            found += _pair(c, a, b)
    return _ordered(found)


def _ordered(found: list[Finding]) -> list[Finding]:
    """Each finding once, grouped by node in the order nodes were first named."""
    unique = list(dict.fromkeys(found))
    first = {node: i for i, node in reversed(list(enumerate(f.node for f in unique)))}
    return sorted(unique, key=lambda f: first[f.node])
