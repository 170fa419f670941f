"""Each mode's data path, programmed on the lab's nodes the way flannel programs it (DESIGN §2).

`udp` is a daemon (see daemons.FlannelUdp); the kernel modes are devices, neighbours, FDB entries and
routes written with pyroute2. `clear()` removes any of them, so a node can switch modes in place.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import rt_proto

from netbench.flannel import VXLAN_PORT, VXLAN_VNI
from netbench.lab.node import LabNode
from netbench.lab.topology import POD_NETWORK

RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
VXLAN_DEV = "flannel.1"


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def clear(node: LabNode) -> None:
    """Remove every kernel-mode data path from the node: vxlan device, peer-subnet routes."""
    with node.ipr() as ipr:
        if (idx := _index(ipr, VXLAN_DEV)) is not None:
            ipr.link("del", index=idx)
        bridge = _index(ipr, "docker0")
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if not dst or route["dst_len"] < POD_NETWORK.prefixlen:
                continue
            if ipaddress.ip_network(f"{dst}/{route['dst_len']}").subnet_of(POD_NETWORK) and \
                    route.get_attr("RTA_OIF") != bridge:
                ipr.route("del", dst=f"{dst}/{route['dst_len']}", table=254)


def create_vxlan(node: LabNode, mtu: int) -> str:
    """flannel.1 as flannel's vxlan backend makes it; returns its MAC (the lease's VtepMAC)."""
    subnet = ipaddress.ip_network(node.spec.subnet)
    with node.ipr() as ipr:
        eth0 = _index(ipr, "eth0")
        ipr.link("add", ifname=VXLAN_DEV, kind="vxlan", vxlan_id=VXLAN_VNI, vxlan_local=node.spec.address,
                 vxlan_link=eth0, vxlan_port=VXLAN_PORT, vxlan_learning=0)
        idx = _index(ipr, VXLAN_DEV)
        ipr.link("set", index=idx, mtu=mtu)
        ipr.addr("add", index=idx, address=str(subnet.network_address), prefixlen=32)
        ipr.link("set", index=idx, state="up")
        return ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")


def program_vxlan_peers(node: LabNode, peers: list[tuple[str, str, str]]) -> None:
    """peers: (subnet, public_ip, vtep_mac). Route onlink via the peer's subnet .0, permanent
    neighbour for that .0 with the peer's VTEP MAC, FDB entry MAC -> peer's PublicIP."""
    with node.ipr() as ipr:
        idx = _index(ipr, VXLAN_DEV)
        for subnet, public_ip, mac in peers:
            gw = str(ipaddress.ip_network(subnet).network_address)
            ipr.neigh("add", dst=gw, lladdr=mac, ifindex=idx, state=NUD_PERMANENT)
            ipr.fdb("add", ifindex=idx, lladdr=mac, dst=public_ip)
            ipr.route("add", dst=subnet, gateway=gw, oif=idx, flags=RTNH_F_ONLINK, proto=rt_proto["boot"])


def program_routes(node: LabNode, peers: list[tuple[str, str]], proto: str, dev: str | None = "eth0") -> list[str]:
    """peers: (subnet, next hop). host-gw writes them like flannel (proto boot); static as proto static.

    Returns the routes the kernel refused because the next hop is not on a link of the node: flannel's
    host-gw logs those and carries on, and so does the lab (the trace then finds the gap)."""
    refused = []
    with node.ipr() as ipr:
        oif = {"oif": _index(ipr, dev)} if dev else {}
        for subnet, via in peers:
            try:
                ipr.route("add", dst=subnet, gateway=via, proto=rt_proto[proto], **oif)
            except NetlinkError as exc:
                if exc.code != errno.ENETUNREACH:
                    raise
                refused.append(f"{subnet} via {via}: {os.strerror(exc.code)} (next hop not on-link)")
    return refused


def route_segments(node: LabNode, networks: list[str], via: str) -> None:
    """The underlay's own routes between segments, through the lab's router."""
    with node.ipr() as ipr:
        for net in networks:
            ipr.route("add", dst=net, gateway=via, oif=_index(ipr, "eth0"), proto=rt_proto["boot"])
