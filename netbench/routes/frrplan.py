"""A node's FRR plan for `routes apply frr`, from its facts and flannel's leases (frr.plans builds it),
summarised for the user; and the kernel routes FRR has learned on the node."""

from __future__ import annotations

import ipaddress
import json
from typing import Iterable, Sequence

from netbench import facts, frr
from netbench.fleet import Connection
from netbench.routes.errors import RoutesError
from netbench.routes.leases import Lease


def frr_plan(name: str, routing: str, address: str, own: Lease, peers: Iterable[Lease],
             node_facts: facts.NodeFacts, pod_network: str | None = None,
             auth_key: str | None = None) -> frr.FrrPlan:
    """The node's FRR plan (frr.plans, one member per lease): OSPF area 0 on the underlay's network
    (authenticated with `auth_key`, the same on every node), or iBGP with every peer (full mesh); either
    way it redistributes exactly its own lease's subnet and lets only `pod_network` into the kernel."""
    try:
        router_id = str(ipaddress.IPv4Address(address))
    except ValueError:  # the inventory names the node by hostname
        router_id = own.public_ip
    underlay = node_facts.underlay
    if underlay is None or underlay not in node_facts.interfaces:
        underlay = node_facts.connected(router_id)
    if underlay is None or underlay not in node_facts.interfaces:
        raise RoutesError(f"no underlay interface found (none holds {router_id}); set underlay_iface in the "
                          "inventory")
    cidrs = [ipaddress.IPv4Interface(c) for c in node_facts.interfaces[underlay].addrs]
    if not cidrs:
        raise RoutesError(f"the underlay interface {underlay} has no IPv4 address")
    mine = next((c for c in cidrs if str(c.ip) == router_id), cidrs[0])
    me = frr.FrrMember(name, router_id, (str(mine.network),), (underlay,), own.subnet)
    # a peer counts only by its router id (its PublicIP): its own plan is built on its own node
    others = [frr.FrrMember(lease.subnet, lease.public_ip, (), ()) for lease in peers]
    return frr.plans([me, *others], routing, pod_network=pod_network, auth_key=auth_key)[0]


def summarise_plan(plan: frr.FrrPlan) -> list[str]:
    lines = [f"FRR {plan.routing}: router-id {plan.router_id}, redistribute connected {plan.pod_subnet} "
             f"(route-map {frr.POLICY})"]
    if plan.pod_network:
        lines.append(f"zebra installs only routes inside {plan.pod_network} (ip protocol {plan.routing} "
                     f"route-map {frr.IMPORT})")
    if plan.routing == "ospf":
        auth = ", MD5 authentication: neighbours only with this cluster's key" if plan.auth_key else ""
        lines.append(f"network {', '.join(plan.networks)} area 0 on {', '.join(plan.interfaces)} "
                     f"(hello {frr.HELLO_S}s, dead {frr.DEAD_S}s{auth})")
    else:
        lines.append(f"iBGP AS {plan.asn} with {', '.join(plan.bgp_peers) or 'no peer'} (no other neighbour)")
    return lines


def learned(conn: Connection, routing: str, subnets: Sequence[str]) -> set[str]:
    """Which of the subnets the node's kernel routes over `routing` (as zebra installs them), over SSH."""
    argv = ["ip", "-j", "route", "show", "table", "main", "proto", str(frr.LEARNED_PROTO[routing])]
    result = conn.run(argv, check=False)
    if not result.ok:  # a failed look is not "nothing learned": revert would report a clean table it never saw
        raise RoutesError(f"cannot read the routes learned over {routing}: {result.why}")
    try:
        shown = json.loads(result.stdout or "[]")
    except ValueError as exc:
        raise RoutesError(f"cannot read the routes learned over {routing}: {exc}") from None
    return {r.get("dst") for r in shown} & set(subnets)
