"""The udp daemon's packet handling, checked against scapy's reading of the bytes it produces."""

import socket

from scapy.layers.inet import ICMP, IP, UDP

from probes.flannel_udp import decrement_ttl, net_unreachable


def raw(pkt) -> bytearray:
    return bytearray(bytes(pkt))


def test_decrement_ttl_keeps_the_checksum_valid():
    for ttl in (2, 64, 255):
        for ident in (0, 0x1234, 0xFFFF):
            buf = raw(IP(src="10.1.93.2", dst="10.1.45.2", ttl=ttl, id=ident) / UDP(dport=9) / b"x")
            assert decrement_ttl(buf)
            again = IP(bytes(buf))
            assert again.ttl == ttl - 1
            want = again.chksum
            del again.chksum
            assert IP(bytes(again)).chksum == want


def test_ttl_one_is_dropped():
    buf = raw(IP(src="10.1.93.2", dst="10.1.45.2", ttl=1) / UDP(dport=9))
    assert not decrement_ttl(buf)


def test_net_unreachable_is_what_flannel_sends():
    offender = bytes(IP(src="10.1.93.2", dst="10.1.77.9", ttl=63) / UDP(sport=4000, dport=9) / b"payload!")
    reply = IP(net_unreachable(offender, socket.inet_aton("10.1.93.0")))
    assert (reply.src, reply.dst, reply.ttl) == ("10.1.93.0", "10.1.93.2", 8)
    assert reply[ICMP].type == 3 and reply[ICMP].code == 0
    quoted = bytes(reply[ICMP].payload)
    assert quoted[:28] == offender[:28]  # IP header + 8 bytes, as RFC 792 asks
    for layer in (IP, ICMP):  # both checksums verify
        fields = reply[layer]
        want = fields.chksum
        del fields.chksum
        assert IP(bytes(reply))[layer].chksum == want


def test_no_icmp_about_icmp_or_later_fragments():
    ping = bytes(IP(src="10.1.93.2", dst="10.1.77.9") / ICMP())
    assert net_unreachable(ping, socket.inet_aton("10.1.93.0")) is None
    frag = bytes(IP(src="10.1.93.2", dst="10.1.77.9", frag=185) / UDP(dport=9))
    assert net_unreachable(frag, socket.inet_aton("10.1.93.0")) is None
