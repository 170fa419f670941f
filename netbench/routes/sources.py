"""Where flannel's leases come from, as one table (leases.LeaseTable) whatever the source: etcd (v2 or v3,
flannel's own subnet manager), the Node objects of a `kubectl get nodes -o json` file (kube-flannel's
`--kube-subnet-mgr`), or the nodes themselves (nodeleases: subnet.env and the overlay device, from the
facts every command gathers). cluster.leases.source chooses; by default etcd when configured, else the
nodes. The sources read from here (etcd, the file) are read while the nodes are reached (`stored`); the
table is made once the facts are in (`table`), with every other source it could read kept to
cross-check it (controlplane's lease-sources-disagree)."""

from __future__ import annotations

from typing import Mapping

from netbench.errors import UserError
from netbench.facts import NodeFacts
from netbench.inventory import Inventory
from netbench.routes.kube import read_node_leases
from netbench.routes.leases import LeaseTable, lease_table
from netbench.routes.nodeleases import SUBNET_ENV, node_leases

NODES_LABEL = f"nodes ({SUBNET_ENV}, underlay address and overlay device, over SSH)"
Stored = dict[str, "LeaseTable | UserError"]


def stored(inv: Inventory, timeout: float = 3.0) -> Stored:
    """Every source read from here that the inventory names: etcd, the Node objects' file. Each is its
    table, or the UserError saying why it could not be read (a source that fails is not a crash)."""
    out: Stored = {}
    if inv.cluster.etcd is not None:
        try:
            table = lease_table(inv, timeout)
            out["etcd"] = LeaseTable(table, f"etcd {', '.join(inv.cluster.etcd.endpoints)}")
        except UserError as exc:
            out["etcd"] = exc
    path = inv.cluster.leases.kube_nodes
    if path is not None:
        try:
            leases, notes = read_node_leases(path)
            out["kubernetes"] = LeaseTable(leases, f"kubernetes {path}", notes=notes)
        except UserError as exc:
            out["kubernetes"] = exc
    return out


def from_nodes(facts: Mapping[str, NodeFacts], unreached: Mapping[str, object] | None = None) -> LeaseTable:
    leases, notes = node_leases(facts, unreached)
    return LeaseTable(leases, NODES_LABEL, notes=notes)


def table(inv: Inventory, facts: Mapping[str, NodeFacts] | None, read: Stored | None = None,
          unreached: Mapping[str, object] | None = None) -> tuple[LeaseTable | None, str]:
    """(the lease table of the inventory's source, where it came from), with the other sources that
    could be read in its `compared`; (None, why) when the source cannot be read: lease checks are then
    skipped, not failed. `facts` None: the nodes were not reached (no node source)."""
    read = stored(inv) if read is None else read
    tables: dict[str, LeaseTable | UserError] = dict(read)
    if facts is not None:
        tables["nodes"] = from_nodes(facts, unreached)
    source = inv.cluster.lease_source
    chosen = tables.get(source)
    if chosen is None:
        return None, f"leases from {source}: not read (the nodes were not reached)"
    if isinstance(chosen, UserError):
        return None, f"{chosen}: leases not checked"
    compared = {t.source: dict(t) for name, t in tables.items() if name != source and isinstance(t, LeaseTable)}
    notes = chosen.notes + [f"{name}: {t}" for name, t in tables.items() if isinstance(t, UserError)]
    return LeaseTable(chosen, chosen.source, compared, notes), chosen.source


def required(inv: Inventory, facts: Mapping[str, NodeFacts] | None, read: Stored | None = None,
             unreached: Mapping[str, object] | None = None) -> LeaseTable:
    """The table `routes apply` routes from: UserError when it cannot be read or holds no lease."""
    read = stored(inv) if read is None else read
    source = inv.cluster.lease_source
    if isinstance(read.get(source), UserError):
        raise read[source]
    leases, where = table(inv, facts, read, unreached)
    if leases is None:
        raise UserError(where)
    if not leases:
        raise UserError(_empty(inv, source, leases))
    return leases


def stored_source(inv: Inventory, timeout: float = 3.0) -> LeaseTable | None:
    """The inventory's source when it is read from here (etcd, the Node objects): its table, checked
    before any node is reached; None for the nodes' own (read with their facts). UserError when it
    cannot be read or is empty."""
    source = inv.cluster.lease_source
    if source == "nodes":
        return None
    return required(inv, None, stored(inv, timeout))


def _empty(inv: Inventory, source: str, leases: LeaseTable) -> str:
    notes = f" ({'; '.join(leases.notes[:4])})" if leases.notes else ""
    if source == "etcd":
        etcd = inv.cluster.etcd
        return (f"etcd at {', '.join(etcd.endpoints)} holds no flannel lease under {etcd.prefix}/subnets/ "
                "(is flannel running, and is cluster.etcd.prefix right?)")
    if source == "kubernetes":
        return (f"{inv.cluster.leases.kube_nodes}: no Node object carries flannel's annotations{notes} "
                "(is kube-flannel running with --kube-subnet-mgr?)")
    return f"no node holds a flannel lease{notes}: is flannel running (it writes {SUBNET_ENV})?"

