"""flannel's leases as the nodes themselves hold them, for clusters with no lease in etcd (kube-flannel's
`--kube-subnet-mgr`): each node's /run/flannel/subnet.env subnet, its underlay address and its overlay
device (vxlan: flannel.1's MAC, VNI, port and local address; udp: flannel0), read from the facts every
command gathers already. Pure: NodeFacts in, Leases out."""

from __future__ import annotations

import ipaddress
from typing import Mapping

from netbench.facts import NodeFacts
from netbench.flannel import Mode
from netbench.routes.leases import Lease

SUBNET_ENV = "/run/flannel/subnet.env"
VXLAN, UDP = Mode.vxlan.backend, Mode.udp.backend


def public_ip(f: NodeFacts) -> str:
    """The address flannel would publish: the vxlan device's local address, else the node's address when
    its underlay interface holds it, else that interface's first address."""
    dev = f.device_of_kind(VXLAN.kind, VXLAN.device)
    if dev and dev.details.get("local"):
        return str(dev.details["local"])
    iface = f.interfaces.get(f.underlay or "")
    held = [str(ipaddress.ip_interface(a).ip) for a in (iface.addrs if iface else [])]
    return f.address if f.address in held or not held else held[0]


def lease_of(f: NodeFacts) -> Lease | None:
    """What flannel wrote into this node's lease, as far as the node shows it; None without subnet.env.
    BackendType from the overlay device the node has (none, e.g. host-gw or routes: left empty)."""
    if f.subnet_env is None:
        return None
    subnet = str(ipaddress.ip_interface(f.subnet_env.subnet).network)
    vxlan = f.device_of_kind(VXLAN.kind, VXLAN.device)
    backend, mac, vni, port = "", None, None, None
    if vxlan is not None:
        vni = vxlan.details.get("id")
        port = vxlan.details.get("port")
        backend, mac = VXLAN.type, vxlan.mac or None
        vni, port = (vni if isinstance(vni, int) else None), (port if isinstance(port, int) else None)
    elif UDP.device in f.interfaces and f.interfaces[UDP.device].kind == UDP.kind:
        backend = UDP.type
    return Lease(subnet, public_ip(f), backend, vtep_mac=mac, vni=vni, source=f"node {f.name}",
                 key=f"{f.name}:{SUBNET_ENV}", port=port)


def node_leases(facts: Mapping[str, NodeFacts], unreached: Mapping[str, object] | None = None,
                ) -> tuple[dict[str, Lease], list[str]]:
    """subnet -> Lease of every node whose facts are in, and notes on the nodes that gave none."""
    leases: dict[str, Lease] = {}
    notes = [f"{name}: not reached ({why}): its lease is unknown" for name, why in sorted((unreached or {}).items())]
    for name, f in sorted(facts.items()):
        lease = lease_of(f)
        if lease is None:
            notes.append(f"{name}: no {SUBNET_ENV}: no lease")
        elif lease.subnet in leases:
            other = leases[lease.subnet].source.removeprefix("node ")
            notes.append(f"{name}: {SUBNET_ENV} names {lease.subnet}, {other}'s subnet too: kept {other}'s")
        else:
            leases[lease.subnet] = lease
    return dict(sorted(leases.items(), key=lambda kv: ipaddress.IPv4Network(kv[0]))), notes
