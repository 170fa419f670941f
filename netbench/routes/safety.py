"""Which of flannel's leases are safe to route: a pure check over (leases, inventory, node facts), run on
every lease before `routes apply` changes anything on any node, and shared with doctor's lease checks.

A lease is a route netbench writes as root (`ip route replace <subnet> …`): a key `0.0.0.0-0`, or one
covering the underlay, would replace the default or the connected route and cut the SSH path that
`revert` needs. So a lease must lie inside cluster.pod_network, name a node of the inventory, overlap
no other lease, and cover no address or route the underlay uses (a node's connected routes, the routes
to its peers' addresses)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from itertools import combinations
from typing import Collection, Iterable, Mapping, Sequence

from netbench.errors import UserError
from netbench.facts import NodeFacts, Route
from netbench.routes.leases import Lease

Network = ipaddress.IPv4Network


@dataclass(frozen=True)
class UnsafeLease:
    """One lease netbench refuses to route, and why."""

    lease: Lease
    reason: str

    @property
    def message(self) -> str:
        """The lease by its etcd key (what the user deletes or fixes), then the reason."""
        name = self.lease.key or self.lease.subnet
        return f"lease {name} ({self.lease.subnet}, PublicIP {self.lease.public_ip}): {self.reason}"


class UnsafeLeases(UserError):
    """Leases that must not become routes; nothing was changed on any node."""

    def __init__(self, problems: Sequence[UnsafeLease]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p.message}" for p in problems)
        super().__init__(f"refusing to route {len(problems)} unsafe flannel lease(s); nothing was changed on "
                         f"any node:\n{lines}\nfix or remove them in etcd (etcdctl del KEY), then apply again")


def overlapping(leases: Iterable[Lease]) -> list[tuple[Lease, Lease]]:
    """Every pair of leases whose subnets overlap: addresses in both would have two owners."""
    return [(a, b) for a, b in combinations(list(leases), 2)
            if _net(a.subnet).overlaps(_net(b.subnet))]


def unsafe_leases(leases: Mapping[str, Lease], pod_network: str, addresses: Collection[str],
                  node_facts: Mapping[str, NodeFacts] | None = None) -> list[UnsafeLease]:
    """Every lease that must not be routed, each with its first reason, in lease order. `addresses` are
    the inventory's node addresses (hostnames are skipped); `node_facts`, when known, add each node's
    underlay addresses and the routes a lease must not cover. Without facts, a PublicIP is checked only
    when the inventory names every node by address."""
    pod = _net(pod_network)
    facts = dict(node_facts or {})
    known = _node_addresses(addresses, facts)
    check_ip = node_facts is not None or all(_ip(a) is not None for a in addresses)
    found: dict[str, UnsafeLease] = {}

    def refuse(lease: Lease, reason: str) -> None:
        found.setdefault(lease.subnet, UnsafeLease(lease, reason))

    for lease in leases.values():
        net = _net(lease.subnet)
        if net.prefixlen == 0:
            refuse(lease, "a default route (0.0.0.0/0): it would send all of a node's traffic, SSH included, "
                          "to one peer")
        elif not net.subnet_of(pod):
            refuse(lease, f"outside cluster.pod_network {pod}: netbench routes only pod subnets")
        elif covered := sorted(a for a in known if a in net):
            refuse(lease, f"covers the underlay: {_owners(covered, known)} inside it")
        elif check_ip and lease.public_ip not in {str(a) for a in known}:
            refuse(lease, "PublicIP is no inventory node's address (nodes: "
                          f"{', '.join(_names(known)) or 'none'}): a stale or foreign lease")
        else:
            clash = _route_overlap(lease, net, pod, facts)
            if clash:
                refuse(lease, clash)
    for a, b in overlapping(lease for lease in leases.values() if lease.subnet not in found):
        for lease, other in ((a, b), (b, a)):
            refuse(lease, f"overlaps lease {other.key or other.subnet} ({other.subnet}): addresses in both "
                          "would have two owners")
    return [found[s] for s in leases if s in found]


def refuse_unsafe(problems: Sequence[UnsafeLease]) -> None:
    """UnsafeLeases (a UserError, exit 2) naming every unsafe lease, when there is one."""
    if problems:
        raise UnsafeLeases(problems)


def _names(known: Mapping[ipaddress.IPv4Address, str]) -> list[str]:
    return sorted({f"{name} {address}" if name != str(address) else name for address, name in known.items()})


def _route_overlap(lease: Lease, net: Network, pod: Network, facts: Mapping[str, NodeFacts]) -> str | None:
    """The first route of a node the lease would override or shadow: a connected route (other than the
    node's own pod bridge, for its own lease), or any route to a node's address. Routes that hold the
    whole pod network (flannel0's /16, an underlay /8 the pods sit in) stay: a lease is more specific."""
    addresses = {a for f in facts.values() for a in _addresses_of(f)}
    for name, f in sorted(facts.items()):
        for route in f.routes:
            dst = _route_dst(route)
            if dst is None or dst.prefixlen == 0 or pod.subnet_of(dst) or not dst.overlaps(net):
                continue
            own = route.dev == f.bridge and dst == net and lease.public_ip in {str(a) for a in _addresses_of(f)}
            underlay = any(a in dst for a in addresses)
            if underlay or (route.proto == "kernel" and not own):
                what = "connected route" if route.proto == "kernel" else "route to the underlay"
                return f"overlaps {name}'s {what} `{route}`: routing it would override the node's own network"
    return None


def _node_addresses(addresses: Collection[str], facts: Mapping[str, NodeFacts]) -> dict[ipaddress.IPv4Address, str]:
    """Every address a node of the inventory is known by -> the node's name: the inventory's (IPs only)
    and, from facts, the addresses on its underlay interface."""
    known: dict[ipaddress.IPv4Address, str] = {}
    for address in addresses:
        ip = _ip(address)
        if ip is not None:
            name = next((n for n, f in facts.items() if f.address == address), address)
            known.setdefault(ip, name)
    for name, f in facts.items():
        for ip in _addresses_of(f):
            known.setdefault(ip, name)
    return known


def _addresses_of(f: NodeFacts) -> list[ipaddress.IPv4Address]:
    found = [ip for ip in [_ip(f.address)] if ip is not None]
    iface = f.interfaces.get(f.underlay or "")
    found += [ipaddress.IPv4Interface(cidr).ip for cidr in (iface.addrs if iface else [])]
    return found


def _owners(covered: Sequence[ipaddress.IPv4Address], known: Mapping[ipaddress.IPv4Address, str]) -> str:
    shown = ", ".join(f"{known[a]}'s address {a}" if known[a] != str(a) else f"node address {a}" for a in covered[:3])
    more = f" and {len(covered) - 3} more" if len(covered) > 3 else ""
    return f"{shown}{more} {'lies' if len(covered) == 1 else 'lie'}"


def _route_dst(route: Route) -> Network | None:
    if route.dst == "default":
        return _net("0.0.0.0/0")
    try:
        return ipaddress.IPv4Network(route.dst, strict=False)
    except ValueError:
        return None  # an IPv6 or odd destination: not one a pod lease can cover


def _ip(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _net(text: str) -> Network:
    return ipaddress.IPv4Network(text, strict=False)
