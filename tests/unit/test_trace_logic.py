"""Trace logic without a lab: paths from recorded facts, correlation of crafted pcaps, verdicts."""

import io
import json
from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import PcapWriter

from netbench import facts
from netbench.trace import correlate, diagnose, paths
from netbench.trace.correlate import ETHERNET, RAW_IP, Sighting
from netbench.trace.tracer import craft

DATA = Path(__file__).parent / "data"


def node_facts(mode: str):
    data = json.loads((DATA / f"facts-{mode}.json").read_text())
    return {n: facts.analyse(n, data["addresses"][n], data["raw"][n], "10.1.0.0/16") for n in ("n1", "n2")}


def test_expected_paths_per_mode():
    f = node_facts("udp")
    hops = paths.expected_hops("udp", f["n1"], f["n2"], "va", "vb")
    assert [h.label for h in hops] == ["n1:va:in", "n1:docker0:in", "n1:flannel0:out", "n1:eth0:out", "n2:eth0:in",
                                       "n2:flannel0:in", "n2:docker0:out", "n2:vb:out"]
    assert [h.encap for h in hops if h.role == "underlay"] == ["udp", "udp"]
    f = node_facts("host-gw")
    assert len(paths.expected_hops("host-gw", f["n1"], f["n2"], "va", "vb")) == 6
    assert [h.label for h in paths.expected_hops("host-gw", f["n1"], f["n2"], None, None, host=True)] == [
        "n1:eth0:out", "n2:eth0:in"]
    reply = paths.reply_hops(hops)
    assert reply[0].label == "n2:vb:in" and reply[-1].label == "n1:va:out"


def pcap_bytes(packets, linktype=1) -> bytes:
    buf = io.BytesIO()
    writer = PcapWriter(buf, linktype=linktype, nano=True, sync=True)
    for t, p in packets:
        p.time = t
        writer.write(p)
    writer.flush()
    return buf.getvalue()


def test_correlation_opens_udp_and_vxlan_encapsulation():
    inner = IP(src="10.1.1.2", dst="10.1.2.2", ttl=62, id=99) / ICMP(type=8, id=5, seq=3) / Raw(
        correlate.marker(5, 3) + b"\0" * 20)
    udp = Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=8285, dport=8285) / Raw(bytes(inner))
    vx = Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=40000, dport=8472) / VXLAN(vni=1) / Ether(
        dst="aa:bb:cc:dd:ee:ff") / inner
    other = Ether() / IP(src="10.1.1.2", dst="10.1.2.2") / ICMP(type=8) / Raw(b"not ours")
    seen = correlate.sightings("n1", "eth0", pcap_bytes([(1.000000001, udp), (1.5, vx), (2, other)]), 5, {})
    assert [(s.seq, s.kind, s.ttl, s.encap["type"]) for s in seen] == [(3, "request", 62, "udp"),
                                                                       (3, "request", 62, "vxlan")]
    assert seen[0].t_ns == 1_000_000_001 and seen[0].encap["port"] == 8285
    assert seen[1].encap["vni"] == 1 and seen[1].encap["inner_mac_dst"] == "aa:bb:cc:dd:ee:ff"
    # a capture killed mid-record: what was whole still counts, the cut record is dropped, nothing crashes
    assert correlate.sightings("n1", "eth0", pcap_bytes([(1, udp)])[:30], 5, {}) == []
    assert len(correlate.sightings("n1", "eth0", pcap_bytes([(1, udp), (2, vx)])[:-120], 5, {})) == 1


def test_icmp_errors_about_probes_are_recognised_by_ip_id():
    packets, main, sweep, ids = craft("10.1.1.2", "10.1.2.2", 77, 3, 84, [1400])
    probe = IP(bytes.fromhex(packets[0]))
    err = Ether() / IP(src="10.1.1.1", dst="10.1.1.2") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(bytes(probe)[:28])
    (s,) = correlate.sightings("n1", "docker0", pcap_bytes([(1, err)]), 77, ids)
    assert s.kind == "error" and s.seq == 0 and "fragmentation needed (next-hop MTU 1400)" in s.error
    assert main == [0, 1, 2] and sorted(sweep.values()) == [1400, 1400]
    assert all(IP(bytes.fromhex(p)).flags.DF for p in packets)


def test_the_header_fast_path_sees_exactly_what_scapy_s_dissection_sees():
    def probe(seq, kind=8, ttl=63, **ip):
        return IP(src="10.1.1.2", dst="10.1.2.2", ttl=ttl, id=1000 + seq, flags="DF", **ip) / ICMP(
            type=kind, id=7, seq=seq) / Raw(correlate.marker(7, seq) + b"\0" * 30)

    outer = dict(src="198.18.0.1", dst="198.18.0.2", ttl=64)
    ids = {1000 + q: q for q in range(20)}
    err = IP(src="10.1.1.1", dst="10.1.1.2") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(bytes(probe(9))[:28])
    captures = {
        ETHERNET: [Ether() / probe(0), Ether() / probe(1, kind=0, ttl=62),
                   Ether() / IP(**outer) / UDP(sport=8285, dport=8285) / Raw(bytes(probe(2))),
                   Ether() / IP(**outer) / UDP(sport=51000, dport=8472) / VXLAN(vni=7) / Ether(dst="02:00:00:00:00:01")
                   / probe(3),
                   Ether() / IP(**outer) / UDP(sport=51000, dport=4789) / VXLAN(vni=7) / Ether() / probe(4),
                   Ether() / err, Ether() / IP(src="10.1.1.2", dst="10.1.2.2", options=[b"\x01\x01\x01\x00"])
                   / ICMP(type=8, id=7, seq=5) / Raw(correlate.marker(7, 5)),
                   Ether() / IP(src="10.1.1.2", dst="10.1.2.2", frag=10, proto=1) / Raw(correlate.marker(7, 6) * 3),
                   Ether() / probe(8) / Raw(b"x"),  # padding after the marker
                   Ether() / IP(src="10.1.1.2", dst="10.1.2.2") / ICMP(type=8) / Raw(correlate.marker(8, 1)),
                   Ether(type=0x86DD) / Raw(b"\x60" + b"\0" * 60), Ether(type=0x0806) / Raw(b"\0" * 28)],
        RAW_IP[0]: [probe(10), probe(11, kind=0), err],  # LINKTYPE_RAW, as tcpdump writes for flannel0
    }
    for linktype, packets in captures.items():
        pcap = pcap_bytes([(1 + i / 1000, p) for i, p in enumerate(packets)], linktype=linktype)
        fast = correlate.sightings("n1", "eth0", pcap, 7, ids)
        assert fast == correlate.sightings("n1", "eth0", pcap, 7, ids, fast=False)
        assert fast and fast[0].t_ns == 1_000_000_000
    assert [s.seq for s in correlate.sightings("n1", "eth0", pcap_bytes(
        [(1, p) for p in captures[ETHERNET]]), 7, ids)] == [0, 1, 2, 3, 4, 9, 5, 8]  # not: a fragment, another trace


def sight(hops, seqs, kind="request", upto=None, t0=1000):
    out = []
    for i, h in enumerate(hops[:upto]):
        for q in seqs:
            out.append(Sighting(h.node, h.iface, q, kind, t0 + q * 10_000 + i * 1000, 64 - i, 98))
    return out


def test_verdicts_from_sightings():
    f = node_facts("host-gw")
    req = paths.expected_hops("host-gw", f["n1"], f["n2"], "va", "vb")
    rep = paths.reply_hops(req)
    main = list(range(10))
    ok = diagnose.analyse(req, rep, sight(req, main) + sight(rep, main, "reply"), main, {}, f["n1"], f["n2"], "host-gw")
    assert [v.kind for v in ok.verdicts] == ["delivered"] and ok.differences == []
    assert [h.t_p50_us for h in ok.hops] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]

    lossy = diagnose.analyse(req, rep, sight(req, main) + sight(rep, main[:7], "reply"), main, {}, f["n1"], f["n2"],
                             "host-gw")
    assert lossy.verdict.kind == "packet-loss" and "30%" in lossy.verdict.message

    f["n1"].routes = [r for r in f["n1"].routes if r.dst != f["n2"].pod_subnet]
    stuck = diagnose.analyse(req, rep, sight(req, main, upto=2), main, {}, f["n1"], f["n2"], "host-gw")
    assert (stuck.verdict.kind, stuck.verdict.node, stuck.verdict.hop) == ("no-route", "n1", "n1:docker0:in")
    assert "expected hop n1:eth0:out saw no probe" in stuck.differences

    # the same symptom where the peer is not on the node's own L2 segment: host-gw cannot work there
    f["n2"].address = "198.19.1.2"
    far = diagnose.analyse(req, rep, sight(req, main, upto=2), main, {}, f["n1"], f["n2"], "host-gw")
    assert far.verdict.kind == "not-on-link"


def test_mtu_black_hole_versus_signalled_mtu():
    f = node_facts("host-gw")
    req = paths.expected_hops("host-gw", f["n1"], f["n2"], "va", "vb")
    rep = paths.reply_hops(req)
    main = [0, 1]
    sweep = {2: 1400, 3: 1500}
    seen = sight(req, main + [2]) + sight(rep, main + [2], "reply") + sight(req, [3], upto=3)
    r = diagnose.analyse(req, rep, seen, main, sweep, f["n1"], f["n2"], "host-gw")
    assert r.path_mtu["largest_delivered"] == 1400
    assert (r.verdict.kind, r.verdict.node, r.verdict.hop) == ("mtu-black-hole", "n2", "n1:eth0:out")
    told = seen + [Sighting("n1", "docker0", 3, "error", 5, 64, 98, {}, "ICMP 3/4 fragmentation needed")]
    r = diagnose.analyse(req, rep, told, main, sweep, f["n1"], f["n2"], "host-gw")
    assert "black_hole" not in r.path_mtu and r.path_mtu["signalled"]


def test_random_loss_of_both_sweep_copies_is_loss_not_an_mtu_black_hole():
    f = node_facts("host-gw")
    req = paths.expected_hops("host-gw", f["n1"], f["n2"], "va", "vb")
    rep = paths.reply_hops(req)
    main = list(range(10))
    sweep = {10: 1400, 11: 1400, 12: 1500, 13: 1500}
    seen = (sight(req, main + [10, 11]) + sight(rep, main[:8] + [10, 11], "reply")
            + sight(req, [12, 13], upto=2))  # the 1500s lost early, like two main probes' replies
    r = diagnose.analyse(req, rep, seen, main, sweep, f["n1"], f["n2"], "host-gw")
    assert r.verdict.kind == "packet-loss"
    assert not any(v.kind == "mtu-black-hole" for v in r.verdicts)


def test_a_fault_on_the_reply_path_is_named_on_the_node_where_replies_stop():
    f = node_facts("udp")
    req = paths.expected_hops("udp", f["n1"], f["n2"], "va", "vb")
    rep = paths.reply_hops(req)
    main = list(range(5))
    # replies reach n1's eth0 (encapsulated) and go no further: n1 does not accept UDP 8285
    upto = [h.label for h in rep].index("n1:eth0:in") + 1
    seen = sight(req, main) + sight(rep, main, "reply", upto=upto)
    f["n1"].nft = "table inet f {\n chain input {\n  udp dport { 8285, 8472 } counter drop\n }\n}"
    r = diagnose.analyse(req, rep, seen, main, {}, f["n1"], f["n2"], "udp")
    assert (r.verdict.kind, r.verdict.node, r.verdict.hop) == ("encap-blocked", "n1", "n1:eth0:in")
    assert r.verdict.message.startswith("replies:") and any("8285" in e for e in r.verdict.evidence)


def test_a_default_route_does_not_hide_a_missing_pod_route():
    f = node_facts("host-gw")
    req = paths.expected_hops("host-gw", f["n1"], f["n2"], "va", "vb")
    rep = paths.reply_hops(req)
    main = list(range(5))
    f["n1"].routes = [r for r in f["n1"].routes if r.dst != f["n2"].pod_subnet]
    f["n1"].routes.append(facts.Route("default", "eth0", "198.18.0.254", "static"))
    seen = sight(req, main, upto=3)  # out of eth0 towards the gateway, never at n2
    r = diagnose.analyse(req, rep, seen, main, {}, f["n1"], f["n2"], "host-gw")
    assert (r.verdict.kind, r.verdict.node) == ("no-route", "n1")
    assert "default route" in r.verdict.message


def test_trace_reads_devices_and_ports_from_the_mode_declaration():
    """The capture filter and the firewall evidence follow flannel.Mode's ports, the hops its devices."""
    from netbench.trace import capture
    assert capture.FILTER == "icmp or udp port 8285 or udp port 8472"
    from types import SimpleNamespace
    node = SimpleNamespace(name="n2", interfaces={}, nft="udp dport 8472 counter drop\nudp dport 8285 drop\n")
    assert diagnose._firewall(node, "vxlan") == ["n2 nftables: udp dport 8472 counter drop"]
    assert diagnose._firewall(node, "udp") == ["n2 nftables: udp dport 8285 drop"]
    assert diagnose._firewall(node, "host-gw") == diagnose._firewall(node, "mixed") == []
    assert paths.overlay_device(node, "udp") == "flannel0" and paths.overlay_device(node, "vxlan") == "flannel.1"
    assert paths.overlay_device(node, "static") is None
