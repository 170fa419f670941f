"""`netbench lab status`: what the lab's nodes run, seen from outside (a banner, an answer, a device),
next to what the state file says they should."""

from __future__ import annotations

import ipaddress
import json

from netbench import flannel
from netbench.flannel import Mode
from netbench.lab import datapaths
from netbench.lab.daemons import tcp_banner
from netbench.lab.datapaths.base import KUBE_NODES
from netbench.lab.node import LabNode
from netbench.lab.procs import alive
from netbench.lab.topology import router_address

OVERLAY_DEVICES = tuple(m.device for m in Mode if m.device)


def report(lab) -> dict:
    """lab: a builder.Lab that is up."""
    state = lab.require_up()
    names = state.topology.flavour
    has_etcd = state.topology.etcd_endpoint is not None
    etcd_ok = lab.etcd.healthy() if has_etcd else True
    leases = {}
    if has_etcd and etcd_ok:
        for key, value in lab.etcd.get_prefix(f"{flannel.DEFAULT_PREFIX}/subnets/").items():
            leases[flannel.subnet_from_key(key)] = json.loads(value)
    elif not has_etcd:
        leases = _node_object_leases(lab.kube_dir / KUBE_NODES)
    rows = []
    for node in lab.nodes:
        ns = state.node(node.name)
        with node.ipr() as ipr:
            routes = _pod_routes(ipr, names.pod_network)
            devices = [d for d in OVERLAY_DEVICES if ipr.link_lookup(ifname=d)]
            links = {d: bool(ipr.link_lookup(ifname=d)) for d in (names.bridge, names.underlay)}
        daemons = {name: alive(pid) and _serving(name, node, devices, etcd_ok)
                   for name, pid in ns.daemons.items()}
        rows.append({
            "name": node.name, "address": node.spec.address, "subnet": node.spec.subnet,
            "roles": list(node.spec.roles), "node": node.alive(), "daemons": daemons,
            "devices": devices, "links": links, "pod_routes": len(routes),
            "lease": leases.get(node.spec.subnet),
        })
    router = None
    if (r := lab.router) is not None:
        with r.ipr() as ipr:
            pod_routes = _pod_routes(ipr, names.pod_network)
        router = {"name": r.name, "addresses": [router_address(k) for k in range(state.segments)],
                  "daemons": {n: alive(p) for n, p in state.router.daemons.items()},
                  "pod_routes": len(pod_routes)}
    return {"mode": state.mode, "flavour": {"name": names.name, "bridge": names.bridge, "underlay": names.underlay,
                                            "pod_network": str(names.pod_network)},
            "routing": state.routing, "segments": state.segments, "router": router,
            "state_dir": str(lab.dir), "inventory": str(lab.inventory_file),
            "etcd": {"endpoint": lab.topology.etcd_endpoint, "healthy": etcd_ok} if has_etcd else None,
            "leases": "etcd" if has_etcd else str(lab.kube_dir / KUBE_NODES),
            "link": state.link, "nodes": rows}


def _node_object_leases(path) -> dict:
    """subnet -> lease value, from the lab's Node objects (a flavour without etcd)."""
    try:
        items = json.loads(path.read_text()).get("items") or []
    except (OSError, ValueError):
        return {}
    found = {}
    for node in items:
        try:
            lease = flannel.node_lease_value(node)
        except ValueError:  # a malformed annotation (doctor names it): no lease shown for that node
            continue
        if lease:
            found[lease[0]] = lease[1]
    return found


def _pod_routes(ipr, network: ipaddress.IPv4Network) -> list:
    return [r for r in ipr.get_routes(family=2, table=254)
            if r.get_attr("RTA_DST") and ipaddress.ip_address(r.get_attr("RTA_DST")) in network]


def _serving(daemon: str, node: LabNode, devices: list[str], etcd_ok: bool) -> bool:
    """Whether a daemon does its job: sshd answers with its banner, etcd is healthy, a data path's
    daemon has its device up."""
    if daemon == "sshd":
        return tcp_banner(node.spec.address, 22).startswith(b"SSH-")
    if daemon == "etcd":
        return etcd_ok
    for path in datapaths.ALL:
        if path.daemon == daemon:
            return path.device in devices
    return True
