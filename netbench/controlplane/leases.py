"""Lease checks: every pod subnet has one lease naming its node's address; no stale, overlapping or
expired lease; where several sources were read (etcd, the Node objects, the nodes' own), they agree.
Leases come as a subnet -> Lease table, whatever source filled it."""

from __future__ import annotations

from netbench.controlplane.common import Cluster, overlaps
from netbench.findings import Finding
from netbench.routes.safety import overlapping


def for_subnet(c: Cluster, reporter: str, owner: str) -> list[Finding]:
    """The lease of `owner`'s pod subnet, as `reporter` (a peer, or the owner itself) needs it."""
    if c.leases is None:
        return []
    f = c.facts[owner]
    subnet, lease = f.pod_subnet, c.lease_of(owner)
    own = reporter == owner
    peer = None if own else owner
    if lease is None:
        near = [lv.describe() for lv in c.leases.values() if overlaps(lv.subnet, subnet)]
        listed = ", ".join(c.leases) or "none"
        message = (f"no lease for {owner}'s own pod subnet {subnet}: no peer's flannel will route to it" if own else
                   f"{reporter}'s flannel has no lease for {owner}'s pod subnet {subnet}: "
                   f"{owner}'s pods are unknown to the overlay")
        return [Finding("lease-missing", reporter, message, peer=peer, hint=c.lease_hint(),
                        evidence=(f"{owner}: pod subnet {subnet} on {f.bridge}, address {f.address}",
                                  f"leases: {listed}", *near), extra={"subnet": subnet})]
    if lease.public_ip == f.address:
        return []
    other = c.node_at(lease.public_ip)
    whose = f"{other}'s address" if other else "no node's address"
    evidence = (lease.describe(), f"{owner}: pod subnet {subnet}, address {f.address}")
    extra = {"subnet": subnet, "lease_ip": lease.public_ip, "node_ip": f.address}
    subject = f"the lease for {owner}'s{' own' if own else ''} pod subnet {subnet}"
    if other:
        return [Finding("lease-wrong-address", reporter, f"{subject} names PublicIP {lease.public_ip} ({whose}), "
                        f"but {owner} is at {f.address}: its pods' traffic goes to {other}", peer=peer,
                        evidence=evidence, hint=c.lease_hint(), extra=extra)]
    return [Finding("lease-stale", reporter, f"{subject} names PublicIP {lease.public_ip} ({whose}), but {owner} "
                    f"is at {f.address}: a stale lease, traffic for its pods goes nowhere", peer=peer,
                    evidence=evidence, hint=c.lease_hint(), extra=extra)]


def _concerned(c: Cluster, *subnets: str, address: str | None = None) -> list[str]:
    """The nodes a lease finding belongs to: the owners of its subnets or address, else every node
    (each node's flannel programs every lease)."""
    owners = [n for n in (*map(c.node_with_subnet, subnets), c.node_at(address)) if n]
    return sorted(set(owners)) or sorted(c.facts)


def table(c: Cluster, only: set[str] | None = None) -> list[Finding]:
    """Cluster-wide lease findings: leases no node owns (stale), overlapping leases, expired ones.
    With `only` (trace's pair), just those that concern those nodes' subnets or addresses."""
    if not c.leases:
        return []
    leases = list(c.leases.values())
    found: list[Finding] = []
    for lease in leases:
        if c.node_with_subnet(lease.subnet):
            continue
        holder = c.node_at(lease.public_ip)
        if holder:
            message = (f"a second lease, {lease.subnet}, names {holder}'s address {lease.public_ip} "
                       f"({holder} uses {c.facts[holder].pod_subnet}): a stale lease")
        else:
            message = (f"lease {lease.subnet} names PublicIP {lease.public_ip}, which is no node's address: "
                       "a stale lease (a node that left or changed address)")
        for node in _concerned(c, address=lease.public_ip):
            found.append(Finding("lease-stale", node, message, evidence=(lease.describe(),), hint=c.lease_hint(),
                                 extra={"subnet": lease.subnet, "lease_ip": lease.public_ip}))
    for a, b in overlapping(leases):  # the check `routes apply` refuses them by
        for node in _concerned(c, a.subnet, b.subnet):
            found.append(Finding("lease-overlap", node, f"leases {a.subnet} and {b.subnet} overlap: "
                                 "addresses in both have two owners", evidence=(a.describe(), b.describe()),
                                 hint=c.lease_hint(), extra={"subnets": [a.subnet, b.subnet]}))
    for lease in leases:
        if lease.ttl_s is not None and lease.ttl_s <= 0:
            for node in _concerned(c, lease.subnet, address=lease.public_ip):
                found.append(Finding("lease-expired", node, f"lease {lease.subnet} ({lease.public_ip}) has "
                                     "expired: flannel drops routes to it and may give its subnet away",
                                     evidence=(lease.describe(),), hint=c.lease_hint(),
                                     extra={"subnet": lease.subnet, "ttl_s": lease.ttl_s}))
    found += disagreements(c)
    if only is not None:
        ours = {c.facts[n].pod_subnet for n in only if c.facts[n].pod_subnet}
        addresses = {c.facts[n].address for n in only}
        found = [x for x in found if x.node in only and (
            any(overlaps(s, o) for s in _subnets(x) for o in ours) or x.extra.get("lease_ip") in addresses)]
    return found


FIELDS = (("public_ip", "PublicIP"), ("backend", "BackendType"), ("vtep_mac", "VtepMAC"), ("vni", "VNI"))


def disagreements(c: Cluster) -> list[Finding]:
    """lease-sources-disagree: a subnet whose lease another source (c.compared) tells differently, field
    by field where both tell it (a node shows no BackendType without an overlay device). A subnet only
    one source has is lease-missing or lease-stale, found above."""
    found: list[Finding] = []
    for label, other in sorted(c.compared.items()):
        for subnet, lease in (c.leases or {}).items():
            theirs = other.get(subnet)
            if theirs is None:
                continue
            differ = [(name, getattr(lease, attr), getattr(theirs, attr)) for attr, name in FIELDS
                      if getattr(lease, attr) not in (None, "") and getattr(theirs, attr) not in (None, "")
                      and getattr(lease, attr) != getattr(theirs, attr)]
            if not differ:
                continue
            said = "; ".join(f"{name} {a} in {lease.source or 'the table'}, {b} in {theirs.source or label}"
                             for name, a, b in differ)
            concerned = {*_concerned(c, subnet, address=lease.public_ip),
                         *_concerned(c, subnet, address=theirs.public_ip)}  # the node either sends its pods to
            for node in sorted(concerned):
                found.append(Finding("lease-sources-disagree", node, f"the sources of flannel's leases disagree on "
                                     f"{subnet}: {said}", evidence=(lease.describe(), theirs.describe()),
                                     hint=c.lease_hint(), extra={"subnet": subnet, "lease_ip": lease.public_ip,
                                                                 "fields": [d[0] for d in differ]}))
    return found


def _subnets(finding: Finding) -> list[str]:
    return finding.extra.get("subnets") or [finding.extra["subnet"]]


def backend(c: Cluster, node: str) -> list[Finding]:
    """An overlay node's lease must name the backend it runs (udp, vxlan): flannel reads it to decide
    how to reach the node. Routed modes are left alone (`netbench routes` may route over any lease)."""
    mode, lease = c.flannel_mode, c.lease_of(node)
    if mode is None or not mode.backend.kind or lease is None or not lease.backend:
        return []
    if lease.backend == mode.backend_type:
        return []
    return [Finding("lease-backend-mismatch", node, f"{node}'s lease says BackendType {lease.backend} but the "
                    f"cluster runs {mode.value}: peers reach it the wrong way", evidence=(lease.describe(),),
                    hint=c.lease_hint())]
