"""The frr mode: Debian's FRR (zebra + ospfd or bgpd, started at `lab up`) configured through vtysh with
netbench.frr's plans, the ones `netbench routes apply frr` uses on a real cluster. OSPF area 0 on every
segment, or iBGP: a full mesh on one segment, the router as route reflector across several. Each node
redistributes its own pod /24; the router none."""

from __future__ import annotations

import time
from functools import partial

from netbench import frr
from netbench.errors import LabError
from netbench.flannel import Mode
from netbench.lab.daemons import FrrDaemons
from netbench.lab.datapaths.base import DataPath, LabView
from netbench.lab.node import LabNode
from netbench.lab.topology import segment_network

LEARN_TIMEOUT_S = 30.0
POLL_S = 0.1


class Frr(DataPath):
    mode = Mode.frr

    def check(self, lab: LabView) -> None:
        if not (FrrDaemons.available() and "zebra" in lab.state.nodes[0].daemons):
            raise LabError("frr mode needs FRR, installed before `lab up` (run `make setup`, then rebuild the lab)")

    def apply(self, lab: LabView) -> None:
        lab.state.frr_applied = True  # before the first node is configured: a failure part-way is undone
        lab.save()
        for node, plan in self.plans(lab, frr.new_auth_key()):
            frr.apply(node, plan, adopt=True)

    def ready(self, lab: LabView) -> None:
        self._wait_learned(lab, present=True)

    def clear(self, lab: LabView) -> None:
        """Take netbench's FRR configuration off every node and wait until zebra has withdrawn what it
        learned: a /24 it re-installed late would outrank the next mode's routes (udp's /16)."""
        if not lab.state.frr_applied:
            return
        for node, plan in self.plans(lab):
            frr.remove(node, plan)
        self._wait_learned(lab, present=False)
        lab.state.frr_applied = False
        lab.save()

    def plans(self, lab: LabView, auth_key: str | None = None) -> list[tuple[LabNode, frr.FrrPlan]]:
        """The lab's nodes (and router) as frr.plans' members; the router, when there is one, is the
        route reflector, reached from each node at its address on that node's segment. Only the pod
        network reaches the kernels; OSPF authenticates with `auth_key` (removal needs none)."""
        topo, nodes, router = lab.topology, lab.nodes, lab.router
        underlay = (topo.flavour.underlay,)
        members = [frr.FrrMember(n.name, n.spec.address, (str(segment_network(n.spec.segment)),), underlay,
                                 n.spec.subnet, reflector_address=n.spec.gateway) for n in nodes]
        reflector = None
        if router:
            segs = range(topo.segments)
            reflector = frr.FrrMember(router.name, router.spec.address, tuple(str(segment_network(k)) for k in segs),
                                      tuple(f"eth{k}" for k in segs))
        by_name = {n.name: n for n in nodes + ([router] if router else [])}
        plans = frr.plans(members, lab.state.routing, reflector, str(topo.flavour.pod_network), auth_key)
        return [(by_name[plan.node], plan) for plan in plans]

    def _wait_learned(self, lab: LabView, present: bool, timeout: float = LEARN_TIMEOUT_S) -> None:
        """A mode is on when its data path works: wait until every node's kernel has learned a route
        (proto ospf/bgp) to every peer's pod subnet, as FRR installs them; or, leaving the mode, until
        none is left. One deadline for the whole lab."""
        routing = lab.state.routing
        proto = frr.LEARNED_PROTO[routing]
        nodes, router = lab.nodes, lab.router
        deadline = time.monotonic() + timeout
        for node in nodes + ([router] if router else []):
            want = {p.spec.subnet for p in nodes if p is not node} if present else None
            wrong = frr.wait_learned(partial(_learned, node, proto), want, present,
                                     max(0.0, deadline - time.monotonic()), POLL_S)
            if wrong and not present:
                raise LabError(f"{node.name}: routes learned over {routing} still in the kernel "
                               f"{timeout:.0f}s after FRR's configuration was removed: {', '.join(wrong)}")
            if wrong:
                seen = frr.neighbours(node, routing)
                raise LabError(f"{node.name}: FRR ({routing}) did not learn {', '.join(sorted(wrong))} "
                               f"within {timeout:.0f}s; neighbours: {seen or 'none'}")


def _learned(node: LabNode, proto: int) -> set[str]:
    """The destinations of the node's kernel routes that zebra installed (proto ospf or bgp)."""
    with node.ipr() as ipr:
        return {f"{r.get_attr('RTA_DST')}/{r['dst_len']}" for r in ipr.get_routes(family=2, table=254)
                if r["proto"] == proto}
