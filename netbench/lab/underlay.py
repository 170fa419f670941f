"""The lab's underlay, wired with pyroute2: the switch namespace with one bridge per L2 segment, the
root namespace's one management veth (guarded by nftables on the switch), the router joining the
segments, and each node's underlay interface and pod bridge (named by the topology's flavour: eth0 and
docker0, or ens4 and cni0). The Lab records every namespace and root link in its state
file before calling these."""

from __future__ import annotations

import ipaddress
import subprocess

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import rt_proto

from netbench.lab.node import LabNode
from netbench.lab.topology import (
    MGMT_ADDRESS,
    MGMT_LINK,
    SWITCH_BRIDGE,
    SWITCH_NS,
    UNDERLAY_SPAN,
    LabTopology,
    router_address,
    segment_network,
)

# The switch lets the root namespace's management veth talk to the nodes' underlay addresses and
# nothing else: without it a pod could reach the root namespace through its node (ip_forward), and
# the reply to its pod address would follow the host's default route out of the machine.
MGMT_GUARD = f"""table bridge nb_guard {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "mgmt" ether type != {{ ip, arp }} drop
    oifname "mgmt" ether type != {{ ip, arp }} drop
    iifname "mgmt" ip saddr != {UNDERLAY_SPAN} drop
    iifname "mgmt" ip daddr != {UNDERLAY_SPAN} drop
    oifname "mgmt" ip saddr != {UNDERLAY_SPAN} drop
    oifname "mgmt" ip daddr != {UNDERLAY_SPAN} drop
  }}
}}
"""


def segment_bridge(segment: int) -> str:
    return SWITCH_BRIDGE if segment == 0 else f"br{segment}"


def make_switch(segments: int) -> None:
    """In the (already created) switch namespace: no IPv6 noise, one bridge per L2 segment."""
    subprocess.run(["ip", "netns", "exec", SWITCH_NS, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1"], check=True)
    with IPRoute(netns=SWITCH_NS) as sw:
        for seg in range(segments):
            sw.link("add", ifname=segment_bridge(seg), kind="bridge")
            sw.link("set", index=sw.link_lookup(ifname=segment_bridge(seg))[0], state="up")


def make_mgmt_link(prefixlen: int) -> None:
    """The root namespace's only lab link, into segment 0, behind MGMT_GUARD."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=MGMT_LINK, kind="veth", peer={"ifname": "mgmt", "net_ns_fd": SWITCH_NS})
        idx = ipr.link_lookup(ifname=MGMT_LINK)[0]
        ipr.addr("add", index=idx, address=MGMT_ADDRESS, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
    plug("mgmt")
    subprocess.run(["ip", "netns", "exec", SWITCH_NS, "nft", "-f", "-"], input=MGMT_GUARD, text=True,
                   check=True, capture_output=True)


def plug(ifname: str, segment: int = 0) -> None:
    with IPRoute(netns=SWITCH_NS) as sw:
        br = sw.link_lookup(ifname=segment_bridge(segment))[0]
        sw.link("set", index=sw.link_lookup(ifname=ifname)[0], master=br, state="up")


def wire_router(router: LabNode, topo: LabTopology) -> None:
    """eth<k> on segment k with 198.18.k.253; forwards between them, answers ARP for the segments
    behind it on segment 0 (so the management veth's one address reaches every node)."""
    for seg in range(topo.segments):
        with IPRoute(netns=SWITCH_NS) as sw:
            sw.link("add", ifname=f"r1s{seg}", kind="veth",
                    peer={"ifname": f"eth{seg}", "net_ns_fd": router.spec.netns})
        plug(f"r1s{seg}", seg)
        with router.ipr() as ipr:
            idx = ipr.link_lookup(ifname=f"eth{seg}")[0]
            ipr.addr("add", index=idx, address=router_address(seg), prefixlen=segment_network(seg).prefixlen)
            ipr.link("set", index=idx, state="up")
    with router.ipr() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    router.run(["sysctl", "-qw", "net.ipv4.conf.eth0.proxy_arp=1"])


def wire_node(node: LabNode, topo: LabTopology) -> None:
    """The underlay interface on the node's segment (routes to the other segments via its router), the
    pod bridge with its lease."""
    spec, names = node.spec, topo.flavour
    with IPRoute(netns=SWITCH_NS) as sw:
        sw.link("add", ifname=spec.name, kind="veth", peer={"ifname": names.underlay, "net_ns_fd": spec.netns})
    plug(spec.name, spec.segment)
    with node.ipr() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        under = ipr.link_lookup(ifname=names.underlay)[0]
        ipr.addr("add", index=under, address=spec.address, prefixlen=segment_network(spec.segment).prefixlen)
        ipr.link("set", index=under, state="up")
    if spec.gateway:
        others = [str(segment_network(k)) for k in range(topo.segments) if k != spec.segment]
        route_segments(node, others, spec.gateway, names.underlay)
    with node.ipr() as ipr:
        ipr.link("add", ifname=names.bridge, kind="bridge")
        br = ipr.link_lookup(ifname=names.bridge)[0]
        iface = ipaddress.ip_interface(spec.bridge_address)
        ipr.link("set", index=br, mtu=topo.mode.mtu(), state="up")
        ipr.addr("add", index=br, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def route_segments(node: LabNode, networks: list[str], via: str, dev: str) -> None:
    """The underlay's own routes between segments, through the lab's router, out of `dev`."""
    with node.ipr() as ipr:
        oif = ipr.link_lookup(ifname=dev)[0]
        for net in networks:
            ipr.route("add", dst=net, gateway=via, oif=oif, proto=rt_proto["boot"])
