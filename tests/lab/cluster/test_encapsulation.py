"""What crosses the underlay in each mode, read from real tcpdump captures on n1's eth0."""

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netbench.flannel import Mode
from tests.lab.helpers import capture, ping


def outbound(packets, src, dst):
    return [p for p in packets if IP in p and p[IP].src == src and p[IP].dst == dst]


def tunnelled(lab):
    """Ping pod n1 -> pod n2 while capturing on n1's eth0: (every packet, those from n1 to n2)."""
    n1, n2 = lab.node("n1"), lab.node("n2")
    with capture(n1, "eth0") as packets:
        assert ping(lab, "n1", lab.pod_ip("n2"), count=3).ok
    tunnel = outbound(packets, n1.spec.address, n2.spec.address)
    assert len(tunnel) >= 3
    return packets, tunnel


def test_udp_carries_the_raw_inner_ip_packet_to_8285(in_mode):
    lab = in_mode(Mode.udp)
    packets, tunnel = tunnelled(lab)
    for pkt in tunnel:
        assert pkt[UDP].sport == pkt[UDP].dport == 8285
        inner = IP(bytes(pkt[UDP].payload))  # no extra header: the payload IS the pod's packet
        assert (inner.src, inner.dst) == (lab.pod_ip("n1"), lab.pod_ip("n2"))
        assert ICMP in inner and inner.ttl == 62  # decremented by n1's kernel and n1's proxy
        assert len(pkt[UDP].payload) == inner.len
    assert not [p for p in packets if ICMP in p and p[IP].src == lab.pod_ip("n1")], "inner packet leaked"


def test_vxlan_uses_8472_vni_1_and_the_peer_vtep_mac(in_mode):
    lab = in_mode(Mode.vxlan)
    _, tunnel = tunnelled(lab)
    for pkt in tunnel:
        assert pkt[UDP].dport == 8472
        vx = VXLAN(bytes(pkt[UDP].payload))
        assert vx.vni == 1
        assert vx[Ether].dst == lab.state.vtep_macs["n2"]
        assert (vx[IP].src, vx[IP].dst) == (lab.pod_ip("n1"), lab.pod_ip("n2"))


@pytest.mark.parametrize("mode", [Mode.host_gw, Mode.static], ids=lambda m: m.value)
def test_routed_modes_put_the_plain_pod_packet_on_eth0(in_mode, mode):
    lab = in_mode(mode)
    n1, n2 = lab.node("n1"), lab.node("n2")
    with n2.ipr() as ipr:
        n2_mac = ipr.get_links(ipr.link_lookup(ifname="eth0")[0])[0].get_attr("IFLA_ADDRESS")
    with capture(n1, "eth0") as packets:
        assert ping(lab, "n1", lab.pod_ip("n2"), count=3).ok
    plain = outbound(packets, lab.pod_ip("n1"), lab.pod_ip("n2"))
    assert len(plain) >= 3
    assert all(ICMP in p and p[Ether].dst == n2_mac for p in plain)  # next hop: n2 itself
    assert not [p for p in packets if UDP in p and p[UDP].dport in (8285, 8472)]
