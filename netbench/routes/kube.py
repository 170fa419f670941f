"""flannel's leases from Kubernetes Node objects (kube-flannel's `--kube-subnet-mgr` keeps no lease in
etcd): a file of `kubectl get nodes -o json` output, one lease per annotated node. Pure but for reading
the file; a node whose annotations netbench cannot read is an error naming the file and the node."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from netbench import flannel
from netbench.errors import UserError
from netbench.routes.leases import Lease, parse_leases


def node_list(path: Path) -> list[dict]:
    """The Node objects of a `kubectl get nodes -o json` file (a List, or one Node); UserError naming it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the Node objects (cluster.leases.kube_nodes): "
                        f"{exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno}, column {exc.colno}: " if isinstance(exc, json.JSONDecodeError) else ""
        raise UserError(f"{path}: {where}not the JSON of `kubectl get nodes -o json`") from None
    if isinstance(doc, dict) and doc.get("kind") == "Node":
        return [doc]
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(f"{path}: no list of Node objects (`items`) in it: is it `kubectl get nodes -o json`?")
    return items


def node_leases(nodes: list[dict], where: str) -> tuple[dict[str, Lease], list[str]]:
    """subnet -> Lease of every Node flannel annotated, and notes on those it has not. `where` names the
    file in errors and in each lease's source."""
    leases: dict[str, Lease] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    for i, node in enumerate(nodes):
        meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
        name = str(meta.get("name") or f"items[{i}]")
        try:
            found = flannel.node_lease_value(node)
            if found is not None:
                subnet, value = found
                lease = parse_leases({subnet: value})[subnet]
        except (ValueError, UserError) as exc:  # said with the file and the node
            raise UserError(f"{where}: node {name}: {exc}") from None
        if found is None:
            notes.append(f"node {name}: no {flannel.PUBLIC_IP} annotation (flannel has not started there?): no lease")
            continue
        if subnet in leases:
            raise UserError(f"{where}: node {name}: spec.podCIDR {subnet} is node {names[subnet]}'s too")
        names[subnet] = name
        leases[subnet] = Lease(lease.subnet, lease.public_ip, lease.backend, lease.vtep_mac, lease.vni,
                               source=f"kubernetes {where}", key=f"node/{name}")
    return dict(sorted(leases.items(), key=lambda kv: ipaddress.IPv4Network(kv[0]))), notes


def read_node_leases(path: Path) -> tuple[dict[str, Lease], list[str]]:
    """The leases of a `kubectl get nodes -o json` file, and notes on the nodes that have none."""
    return node_leases(node_list(path), str(path))
