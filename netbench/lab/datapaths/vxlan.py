"""flannel's vxlan backend, in the kernel: the VXLAN device (VNI and port from flannel.Mode.vxlan, no
learning), and per peer an onlink route via the peer subnet's .0, a permanent neighbour for that .0
with the peer's VTEP MAC and an FDB entry MAC -> the peer's PublicIP."""

from __future__ import annotations

import ipaddress

from pyroute2.netlink.rtnl import rt_proto

from netbench.flannel import Mode
from netbench.lab.datapaths.base import DataPath, LabView, index
from netbench.lab.node import LabNode

RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80


class Vxlan(DataPath):
    mode = Mode.vxlan

    def prepare(self, lab: LabView) -> dict[str, str]:
        """The device comes first: its MAC is the VtepMAC of the node's lease."""
        underlay = lab.topology.flavour.underlay
        return {node.name: create_vxlan(node, self.mode.mtu(), underlay) for node in lab.nodes}

    def apply(self, lab: LabView) -> None:
        nodes, vtep = lab.nodes, lab.state.vtep_macs
        for node in nodes:
            program_vxlan_peers(node, [(p.spec.subnet, p.spec.address, vtep[p.name]) for p in nodes if p is not node])

    def clear(self, lab: LabView) -> None:
        """Deleting the device takes its routes, neighbours and FDB entries with it."""
        for node in lab.nodes:
            with node.ipr() as ipr:
                if (idx := index(ipr, self.device)) is not None:
                    ipr.link("del", index=idx)


def create_vxlan(node: LabNode, mtu: int, underlay: str) -> str:
    """The device as flannel's vxlan backend makes it, on the node's underlay interface; returns its MAC
    (the lease's VtepMAC)."""
    backend = Mode.vxlan.backend
    subnet = ipaddress.ip_network(node.spec.subnet)
    with node.ipr() as ipr:
        ipr.link("add", ifname=backend.device, kind=backend.kind, vxlan_id=backend.vni,
                 vxlan_local=node.spec.address, vxlan_link=index(ipr, underlay), vxlan_port=backend.port,
                 vxlan_learning=0)
        idx = index(ipr, backend.device)
        ipr.link("set", index=idx, mtu=mtu)
        ipr.addr("add", index=idx, address=str(subnet.network_address), prefixlen=32)
        ipr.link("set", index=idx, state="up")
        return ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")


def program_vxlan_peers(node: LabNode, peers: list[tuple[str, str, str]]) -> None:
    """peers: (subnet, public_ip, vtep_mac)."""
    with node.ipr() as ipr:
        idx = index(ipr, Mode.vxlan.device)
        for subnet, public_ip, mac in peers:
            gw = str(ipaddress.ip_network(subnet).network_address)
            ipr.neigh("add", dst=gw, lladdr=mac, ifindex=idx, state=NUD_PERMANENT)
            ipr.fdb("add", ifindex=idx, lladdr=mac, dst=public_ip)
            ipr.route("add", dst=subnet, gateway=gw, oif=idx, flags=RTNH_F_ONLINK, proto=rt_proto["boot"])
