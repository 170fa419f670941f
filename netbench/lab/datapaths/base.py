"""A mode's data path on the lab, as a class (ipmininet's daemons): which mode it is (its device and MTU
overhead come from that mode's declaration in flannel.Mode), a check before anything changes, and what
it does on the lab's nodes: apply, ready (it works, or a LabError says why not), clear.

A switch of mode (Lab._apply_mode) runs: the new path's `check`; every path's `clear` (whatever the last
mode, a failed switch or a fault left; each is idempotent); `publish` (flannel's network config and
leases — in etcd, or without etcd in the Node objects — and subnet.env, with what the path `prepare`d
first); then the new path's `apply` and `ready`.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import time
from pathlib import Path
from typing import ClassVar, Protocol

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import rt_proto

from netbench import flannel
from netbench.flannel import Mode, SubnetEnv
from netbench.lab.node import LabNode
from netbench.lab.state import LabState
from netbench.lab.topology import Flavour, LabTopology
from probes.etcdv3 import Etcd


class LabView(Protocol):
    """What a data path uses of the Lab (builder.Lab is one)."""

    state: LabState
    probes_dir: Path
    kube_dir: Path  # the flavours without etcd: the Node objects and net-conf.json, as the API holds them

    @property
    def topology(self) -> LabTopology: ...
    @property
    def etcd(self) -> Etcd: ...
    @property
    def nodes(self) -> list[LabNode]: ...
    @property
    def router(self) -> LabNode | None: ...
    def save(self) -> None: ...


class DataPath:
    mode: ClassVar[Mode]
    daemon: ClassVar[str | None] = None  # the daemon it runs on each node, by the name the state records

    @property
    def device(self) -> str | None:
        return self.mode.device

    @property
    def overhead(self) -> int:
        return self.mode.overhead

    def check(self, lab: LabView) -> None:
        """Refuse, with a LabError, before anything on the lab changes."""

    def prepare(self, lab: LabView) -> dict[str, str]:
        """What must exist before the leases are written; returns node -> its lease's VtepMAC."""
        return {}

    def apply(self, lab: LabView) -> None:
        """Program the nodes (etcd already holds this mode's config and leases)."""

    def ready(self, lab: LabView) -> None:
        """Return once the data path works on every node."""

    def clear(self, lab: LabView) -> None:
        """Remove what `apply` (or a part of it) left; a no-op when there is nothing."""


KUBE_NODES = "nodes.json"  # in kube_dir: `kubectl get nodes -o json`, as kube-flannel annotates the nodes
NET_CONF = "net-conf.json"  # in kube_dir: kube-flannel-cfg's net-conf.json, the network config


def publish(lab: LabView, path: DataPath) -> dict[str, str]:
    """flannel's side of a mode: the network config, then (after `path.prepare`) a lease per node and its
    /run/flannel/subnet.env. The config and leases go to etcd, or (a flavour without etcd, as kube-flannel's
    subnet manager) to net-conf.json and the nodes' annotations. Returns the VTEP MACs the leases carry."""
    mode, network, flavour = path.mode, str(lab.topology.flavour.pod_network), lab.topology.flavour
    config = flannel.network_config(network, mode, flavour.subnet_len)
    if flavour.etcd:
        _put_both(lab.etcd, f"{flannel.DEFAULT_PREFIX}/config", config)
    vtep = path.prepare(lab)
    if flavour.etcd:
        lease_id = lab.etcd.grant(flannel.LEASE_TTL_S)
        for node in lab.nodes:
            value = flannel.lease_value(node.spec.address, mode, vtep.get(node.name))
            _put_both(lab.etcd, flannel.subnet_key(flannel.DEFAULT_PREFIX, node.spec.subnet), value, lease_id)
    else:
        objects = [flannel.node_object(n.name, n.spec.address, n.spec.subnet, mode, vtep.get(n.name))
                   for n in lab.nodes]
        _write_json(lab.kube_dir / NET_CONF, config)
        _write_json(lab.kube_dir / KUBE_NODES, {"apiVersion": "v1", "kind": "List", "items": objects})
    for node in lab.nodes:
        env = SubnetEnv(network=network, subnet=node.spec.bridge_address, mtu=mode.mtu())
        env_file = node.path("/run/flannel/subnet.env")
        env_file.parent.mkdir(exist_ok=True)
        env_file.write_text(env.render())
    return vtep


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)  # the overlay daemon reading it never sees half a file


def _put_both(etcd: Etcd, key: str, value: dict, lease_id: str | None = None) -> None:
    """flannel >= 0.18 reads the v3 store, flannel <= 0.17 (the seed's) the v2 one: write both."""
    etcd.put(key, flannel.dumps(value), lease_id)
    etcd.put_v2(key, flannel.dumps(value), flannel.LEASE_TTL_S if lease_id else None)


# -- pyroute2 helpers shared by the kernel data paths ----------------------------------------------

def index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def clear_pod_routes(node: LabNode, names: Flavour) -> None:
    """Remove every route into the pod network except the node's own subnet on its bridge."""
    network = names.pod_network
    with node.ipr() as ipr:
        bridge = index(ipr, names.bridge)
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if not dst or route["dst_len"] < network.prefixlen:
                continue
            if ipaddress.ip_network(f"{dst}/{route['dst_len']}").subnet_of(network) and \
                    route.get_attr("RTA_OIF") != bridge:
                ipr.route("del", dst=f"{dst}/{route['dst_len']}", table=254)


def program_routes(node: LabNode, peers: list[tuple[str, str]], proto: str, dev: str | None) -> list[str]:
    """peers: (subnet, next hop), out of `dev` (the node's underlay interface; None: where the next hop
    is). host-gw writes them like flannel (proto boot); static as proto static.

    Returns the routes the kernel refused because the next hop is not on a link of the node: flannel's
    host-gw logs those and carries on, and so does the lab (the trace then finds the gap)."""
    refused = []
    with node.ipr() as ipr:
        oif = {"oif": index(ipr, dev)} if dev else {}
        for subnet, via in peers:
            try:
                ipr.route("add", dst=subnet, gateway=via, proto=rt_proto[proto], **oif)
            except NetlinkError as exc:
                if exc.code != errno.ENETUNREACH:
                    raise
                refused.append(f"{subnet} via {via}: {os.strerror(exc.code)} (next hop not on-link)")
    return refused


def log(node: LabNode, name: str, lines: list[str]) -> None:
    """Append to the node's log/<name>.log, as the daemon it stands for would."""
    if lines:
        with open(node.dir / "log" / f"{name}.log", "a") as f:
            f.write("".join(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n" for line in lines))
