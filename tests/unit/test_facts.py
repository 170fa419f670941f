"""Mode detection and discovery from facts recorded on the lab's nodes in each mode (real `ip -j`
output, stored), so these run anywhere."""

import json
from pathlib import Path

import pytest

from netbench import facts
from netbench.flannel import Mode

DATA = Path(__file__).parent / "data"


def load(mode: str, node: str = "n1"):
    data = json.loads((DATA / f"facts-{mode}.json").read_text())
    f = facts.analyse(node, data["addresses"][node], data["raw"][node], "10.1.0.0/16")
    peers = {k: v for k, v in data["subnets"].items() if k != node}
    return f, peers, data


@pytest.mark.parametrize("mode", [m for m in Mode], ids=lambda m: m.value)
def test_mode_is_detected_with_evidence(mode):
    f, peers, _ = load(mode.value)
    verdict = facts.detect_mode(f, peers)
    assert verdict.mode is mode
    assert len(verdict.evidence) >= len(peers)
    for peer, subnet in peers.items():
        assert any(subnet in e and peer in e for e in verdict.evidence)


def test_discovery_finds_bridge_underlay_subnet_and_mtu_without_being_told():
    f, _, data = load("udp")
    assert (f.bridge, f.underlay) == ("docker0", "eth0")
    assert f.pod_subnet == data["subnets"]["n1"]
    assert f.pod_mtu == 1472 and f.interfaces["flannel0"].kind == "tun"
    assert f.ip_forward and f.missing_tools == []
    assert f.bridge_ip.endswith(".1")


def test_vxlan_evidence_names_vni_port_and_fdb():
    f, peers, _ = load("vxlan")
    verdict = facts.detect_mode(f, peers)
    assert all("VNI 1 port 8472" in e and "2 FDB entries" in e for e in verdict.evidence if "flannel.1" in e)
    route = verdict.peer_routes[next(iter(peers))]
    assert route.onlink and route.dev == "flannel.1"


def test_inventory_values_win_over_discovery():
    _, _, data = load("host-gw")
    f = facts.analyse("n1", data["addresses"]["n1"], data["raw"]["n1"], "10.1.0.0/16",
                      subnet="10.1.200.0/24", bridge="cni0", underlay="ens3")
    assert (f.pod_subnet, f.bridge, f.underlay) == ("10.1.200.0/24", "cni0", "ens3")


def test_longest_prefix_route_and_missing_tools():
    f, _, data = load("udp")
    assert f.route_to("10.1.250.9").dev == "flannel0"  # the /16 into the tunnel
    assert f.route_to(data["subnets"]["n1"]).dev == "docker0"  # own subnet: the /24 on the bridge
    assert f.route_to("192.0.2.1") is None  # nodes have no default route
    raw = dict(data["raw"]["n1"], tools={"python3": "/usr/bin/python3", "ip": "/sbin/ip"})
    g = facts.analyse("n1", data["addresses"]["n1"], raw, "10.1.0.0/16")
    assert g.missing_tools == ["tcpdump", "iperf3"]


def test_mixed_paths_are_called_mixed():
    f, peers, _ = load("host-gw")
    first = next(iter(peers))
    f.routes = [r for r in f.routes if r.dst != peers[first]]  # one peer lost its route
    verdict = facts.detect_mode(f, peers)
    assert verdict.mode == "mixed"
    assert any(f"no route to {first}" in e for e in verdict.evidence)


def test_host_gw_without_routes_to_peers_off_its_segment_is_still_host_gw():
    f, peers, data = load("host-gw")
    first = next(iter(peers))
    f.routes = [r for r in f.routes if r.dst != peers[first]]  # flannel could not write it
    addresses = dict(data["addresses"])
    assert facts.detect_mode(f, peers, addresses).mode == "mixed"  # the peer is on-link: a broken node
    addresses[first] = "198.18.1.2"  # the peer is behind a router
    verdict = facts.detect_mode(f, peers, addresses)
    assert verdict.mode is Mode.host_gw
    assert any("not on-link" in e and first in e for e in verdict.evidence)


def test_routes_learned_by_frr_are_reported_with_their_protocol_and_neighbour():
    f, peers, data = load("frr")
    assert {r.dst for r in f.learned_routes} == set(peers.values())
    for route in f.learned_routes:
        assert route.proto == "ospf"
        neighbour = {v: k for k, v in data["addresses"].items()}[route.via]
        assert neighbour in peers
        assert f.route_source(route).startswith(f"learned over OSPF from {route.via} (FRR neighbour Full")


def test_rp_filter_is_keyed_by_the_whole_interface_name():
    f, _, _ = load("vxlan")
    assert set(f.rp_filter) >= {"all", "default", "eth0", "flannel.1", "docker0"}


def test_the_bridge_found_is_the_one_holding_the_known_pod_subnet():
    _, _, data = load("udp")
    raw = data["raw"]["n1"]
    raw["links"].append({"ifname": "cni0", "mtu": 1500, "flags": ["UP"], "linkinfo": {"info_kind": "bridge"}})
    raw["addrs"].append({"ifname": "cni0", "addr_info": [{"family": "inet", "local": "10.1.250.1", "prefixlen": 24}]})
    f = facts.analyse("n1", data["addresses"]["n1"], raw, "10.1.0.0/16")
    assert (f.bridge, f.pod_subnet) == ("docker0", data["subnets"]["n1"])


def recorded_controlplane(mode: str, node: str = "n1"):
    data = json.loads((DATA / "controlplane" / f"{mode}.json").read_text())
    return facts.analyse(node, data["addresses"][node], data["raw"][node], "10.1.0.0/16"), data


def test_neighbours_macs_and_bridge_ports_are_parsed():
    f, data = recorded_controlplane("vxlan")
    vx = f.device_of_kind("vxlan", "flannel.1")
    assert vx.name == "flannel.1" and vx.mac == vx.mac.lower() and len(vx.mac) == 17
    assert {p.name for p in f.bridge_ports()} == {x["ifname"] for x in data["raw"]["n1"]["links"]
                                                  if x.get("master") == "docker0"}
    assert len(f.bridge_ports()) == 2 and all(p.kind == "veth" for p in f.bridge_ports())
    permanent = [n for n in f.neighbours if n.dev == "flannel.1"]
    assert len(permanent) == 2 and all(n.state == "PERMANENT" and n.lladdr and not n.failed for n in permanent)
    n2 = f.neighbour("198.18.0.2", "eth0")
    assert n2 and str(n2).startswith("198.18.0.2 dev eth0 lladdr ")
    assert f.neighbour("198.18.0.2", "flannel.1") is None
    assert facts.parse_neighbours([{"dst": "198.18.0.9", "dev": "eth0", "state": ["FAILED"]}])[0].failed


def test_daemons_carry_their_state_and_the_tun_devices_they_hold():
    f, _ = recorded_controlplane("udp-daemon-stopped")
    udp = [d for d in f.daemons if "flannel_udp" in d["cmdline"]]
    assert len(udp) == 2 and all(d["state"] == "T" and d["tun"] == ["flannel0"] for d in udp)
    assert f.device_of_kind("tun", "flannel0").name == "flannel0"
    assert f.device_of_kind("vxlan") is None


def test_the_probe_reads_process_state_and_tun_fds_of_a_process():
    import os

    from probes import facts as probe

    assert probe.process_state(str(os.getpid())) in ("R", "S")
    assert probe.tun_devices(str(os.getpid())) == []  # no /dev/net/tun open here
    assert probe.tun_devices("999999999") is None and probe.process_state("999999999") == ""


def test_the_probe_pods_veths_are_not_the_nodes_pods():
    """A run refits its probe pods' MTU only after reading the facts: their veths must not count as the
    node's pods, or every pass after a mode switch would report the last mode's MTU as a mismatch."""
    from netbench import pods, probes
    from netbench.facts import Interface, NodeFacts
    ifaces = {"docker0": Interface("docker0", "bridge", 1450, True),
              "vethapp": Interface("vethapp", "veth", 1450, True, master="docker0"),
              pods.host_veth("nb-probe-1"): Interface(pods.host_veth("nb-probe-1"), "veth", 1472, True,
                                                      master="docker0")}
    f = NodeFacts("n1", "198.18.0.1", "n1", 0, {}, True, {}, ifaces, [], None, "10.1.5.0/24", "docker0", None,
                  [], {}, [])
    assert [i.name for i in f.bridge_ports()] == ["vethapp"]
    assert probes.pod_mtu(f) == 1450
