"""The modes without an overlay: routes in the kernel, written as flannel's host-gw writes them or as
netbench's static routes; and none, the seed's broken cluster where nothing routes pod subnets."""

from __future__ import annotations

from netbench.flannel import Mode
from netbench.lab.datapaths.base import DataPath, LabView, clear_pod_routes, log, program_routes


class HostGw(DataPath):
    """flannel's host-gw: the peer's PublicIP as next hop, on-link or nothing (a refused route is
    logged and skipped, as flannel does; the lab's trace then finds the gap)."""

    mode = Mode.host_gw

    def apply(self, lab: LabView) -> None:
        nodes, dev = lab.nodes, lab.topology.flavour.underlay
        for node in nodes:
            refused = program_routes(node, [(p.spec.subnet, p.spec.address) for p in nodes if p is not node], "boot",
                                     dev)
            log(node, self.mode.value, [f"Error adding route to {r}" for r in refused])

    def clear(self, lab: LabView) -> None:
        for node in lab.nodes:
            clear_pod_routes(node, lab.topology.flavour)


class Static(DataPath):
    """Routes from the lease table, proto static: via the peer when it shares the segment, else via the
    router, which routes every pod subnet to its node."""

    mode = Mode.static

    def apply(self, lab: LabView) -> None:
        nodes, router, dev = lab.nodes, lab.router, lab.topology.flavour.underlay
        for node in nodes:
            peers = [(p.spec.subnet, p.spec.address if p.spec.segment == node.spec.segment else node.spec.gateway)
                     for p in nodes if p is not node]
            program_routes(node, peers, "static", dev)
        if router:
            program_routes(router, [(n.spec.subnet, n.spec.address) for n in nodes], "static", dev=None)

    def clear(self, lab: LabView) -> None:
        for node in lab.nodes + ([lab.router] if lab.router else []):
            clear_pod_routes(node, lab.topology.flavour)


class NoDataPath(DataPath):
    """Pods get their subnets and nothing else (the seed's cluster before flannel)."""

    mode = Mode.none
