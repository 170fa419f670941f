"""What every check shares: the cluster it looks at (facts, leases, mode), and how findings name things."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from netbench import flannel
from netbench.facts import Interface, NodeFacts
from netbench.findings import hint
from netbench.flannel import Mode

if TYPE_CHECKING:
    from netbench.routes.leases import Lease


@dataclass(frozen=True)
class Cluster:
    facts: Mapping[str, NodeFacts]
    leases: Mapping[str, "Lease"] | None  # None: unknown (no source could be read), so lease checks are skipped
    mode: str

    @property
    def compared(self) -> Mapping[str, Mapping[str, "Lease"]]:
        """The other sources' tables read to cross-check the leases (a LeaseTable's), by their label."""
        return getattr(self.leases, "compared", None) or {}

    @property
    def flannel_mode(self) -> Mode | None:
        return next((m for m in Mode if m.value == self.mode), None)

    def peers(self, node: str) -> list[str]:
        """The other nodes that have a pod subnet: the ones `node` must reach."""
        return [p for p in sorted(self.facts) if p != node and self.facts[p].pod_subnet]

    def lease_of(self, node: str) -> "Lease | None":
        subnet = self.facts[node].pod_subnet
        return (self.leases or {}).get(subnet) if subnet else None

    def node_at(self, address: str | None) -> str | None:
        return next((n for n, f in sorted(self.facts.items()) if f.address == address), None)

    def node_with_subnet(self, subnet: str) -> str | None:
        return next((n for n, f in sorted(self.facts.items()) if f.pod_subnet == subnet), None)

    def overlay(self, node: str) -> Interface | None:
        """The node's overlay device for the cluster's mode, found by kind (flannel's name wins a tie)."""
        mode = self.flannel_mode
        if mode is None or not mode.backend.kind:
            return None
        return self.facts[node].device_of_kind(mode.backend.kind, mode.device)

    def lease_hint(self) -> str:
        """The command that lists the leases where they were read: etcdctl, kubectl, or subnet.env."""
        lease = next(iter((self.leases or {}).values()), None)
        if lease and lease.source.startswith("kubernetes"):
            return hint("kubectl", "get", "nodes", "-o", "json")
        if lease and lease.source.startswith("node "):
            return hint("cat", lease.key.partition(":")[2] or "/run/flannel/subnet.env")
        prefix = (lease.key.rsplit("/", 1)[0] + "/") if lease and lease.key else f"{flannel.DEFAULT_PREFIX}/subnets/"
        endpoints = lease.source.removeprefix("etcd ").replace(", ", ",") if lease and lease.source else ""
        return hint("etcdctl", *(("--endpoints", endpoints) if endpoints else ()), "get", "--prefix", prefix)


def gateway(subnet: str) -> str:
    """`10.1.74.0/24` -> `10.1.74.0`: the address flannel's vxlan routes use as the peer's next hop."""
    return str(ipaddress.ip_network(subnet).network_address)


def first_host(subnet: str) -> str:
    return str(ipaddress.ip_network(subnet).network_address + 1)


def overlaps(a: str, b: str) -> bool:
    return ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))


def iface_line(iface: Interface) -> str:
    state = "UP" if iface.up else "DOWN"
    mac = f" link/ether {iface.mac}" if iface.mac and iface.kind != "tun" else ""
    return f"{iface.name} ({iface.kind}) mtu {iface.mtu} {state}{mac}"
