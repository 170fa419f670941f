"""Control-plane checks on facts recorded on the lab's nodes (probes/facts.py's JSON and etcd's leases,
stored under data/controlplane; `capture.py` there re-records them). Each check has a case that
fires, from a fault made in the recorded JSON as a person would make it on the node, and one that
does not: the healthy recording of every mode gives no finding at all."""

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from netbench import controlplane, facts
from netbench.routes.leases import Lease, parse_leases

DATA = Path(__file__).parent / "data" / "controlplane"
MODES = ("udp", "vxlan", "host-gw", "static", "frr")


def recorded(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def build(data: dict, leases: dict | None = None):
    nodes = {n: facts.analyse(n, data["addresses"][n], raw, data["pod_network"]) for n, raw in data["raw"].items()}
    table = parse_leases(data["leases"]) if leases is None else leases
    return nodes, table


def run(data: dict, leases: dict | None = None, mode: str | None = None):
    nodes, table = build(data, leases)
    return controlplane.check(nodes, table, mode or data["mode"])


def causes(found) -> set[tuple[str, str, str | None]]:
    return {(f.cause, f.node, f.peer) for f in found}


def subnet(data: dict, node: str) -> str:
    return next(s for s, v in data["leases"].items() if v["PublicIP"] == data["addresses"][node])


def link(data: dict, node: str, name: str) -> dict:
    return next(x for x in data["raw"][node]["links"] if x["ifname"] == name)


@pytest.fixture
def udp():
    return recorded("udp")


@pytest.fixture
def vxlan():
    return recorded("vxlan")


@pytest.mark.parametrize("mode", MODES)
def test_a_healthy_lab_has_no_finding_in_any_mode(mode):
    data = recorded(mode)
    assert run(data) == []
    assert run(data, leases={}) != []  # …but the same nodes with no lease at all are not healthy


@pytest.mark.parametrize("mode", MODES)
def test_no_check_depends_on_the_lab_s_names(mode):
    """The same cluster with a k8s node's names (cni0, ens3, vx0, tunA): healthy, and a fault still found."""
    text = (DATA / f"{mode}.json").read_text()
    for lab_name, other in (("docker0", "cni0"), ("eth0", "ens3"), ("flannel.1", "vx0"), ("flannel0", "tunA")):
        text = text.replace(f'"{lab_name}"', f'"{other}"').replace(f"{lab_name}.", f"{other}.")
    data = json.loads(text)
    nodes, _ = build(data)
    assert (nodes["n1"].bridge, nodes["n1"].underlay) == ("cni0", "ens3")
    assert run(data) == []
    link(data, "n1", "cni0")["mtu"] = 9000
    found = run(data)
    assert [(f.cause, f.node, f.hop) for f in found] == [("mtu-mismatch", "n1", "cni0")]


# -- leases ---------------------------------------------------------------------------------------


def test_a_peer_s_subnet_without_a_lease_is_named_on_every_node(udp):
    gone = subnet(udp, "n2")
    del udp["leases"][gone]
    found = run(udp)
    assert causes(found) == {("lease-missing", "n1", "n2"), ("lease-missing", "n3", "n2"),
                             ("lease-missing", "n2", None)}
    n1 = next(f for f in found if f.node == "n1")
    assert gone in n1.message and "n2" in n1.message and n1.hint.startswith("etcdctl get --prefix /coreos.com/")
    assert any(gone in e for e in n1.evidence)


def test_a_lease_naming_another_node_or_no_node(udp):
    s2 = subnet(udp, "n2")
    udp["leases"][s2]["PublicIP"] = udp["addresses"]["n3"]
    found = run(udp)
    assert ("lease-wrong-address", "n1", "n2") in causes(found)
    f = next(f for f in found if f.cause == "lease-wrong-address")
    assert "198.18.0.3" in f.message and "198.18.0.2" in f.message and f.extra["lease_ip"] == "198.18.0.3"
    udp["leases"][s2]["PublicIP"] = "198.18.0.99"
    assert {c for c, _, _ in causes(run(udp))} == {"lease-stale"}


def test_a_lease_no_node_owns_is_stale(udp):
    udp["leases"]["10.1.250.0/24"] = {"PublicIP": "198.18.0.99", "BackendType": "udp", "BackendData": None}
    assert causes(run(udp)) == {("lease-stale", n, None) for n in ("n1", "n2", "n3")}
    udp["leases"]["10.1.250.0/24"]["PublicIP"] = udp["addresses"]["n1"]  # a second lease of n1's address
    found = run(udp)
    assert causes(found) == {("lease-stale", "n1", None)} and "second lease" in found[0].message


def test_overlapping_leases(udp):
    wider = "10.1.0.0/17"  # holds n2's subnet (10.1.74.0/24 in this recording)
    udp["leases"][wider] = {"PublicIP": "198.18.0.99", "BackendType": "udp", "BackendData": None}
    found = [f for f in run(udp) if f.cause == "lease-overlap"]
    assert found and all(wider in f.message for f in found)
    assert all(len(f.evidence) == 2 for f in found)


def test_an_expired_lease_only_when_its_ttl_is_known(udp):
    nodes, table = build(udp)
    s2 = subnet(udp, "n2")
    table[s2] = replace(table[s2], ttl_s=86000, source="etcd http://198.18.0.1:2379",
                        key=f"/coreos.com/network/subnets/{s2.replace('/', '-')}")
    assert controlplane.check(nodes, table, "udp") == []
    table[s2] = replace(table[s2], ttl_s=-1)
    found = controlplane.check(nodes, table, "udp")
    assert causes(found) == {("lease-expired", "n2", None)}
    assert "TTL -1s" in found[0].evidence[0] and "--endpoints http://198.18.0.1:2379" in found[0].hint


def test_unknown_leases_skip_the_lease_checks_only(udp):
    nodes, _ = build(udp)
    assert controlplane.check(nodes, None, "udp") == []
    link(udp, "n1", "flannel0")["flags"].remove("UP")
    nodes, _ = build(udp)
    assert causes(controlplane.check(nodes, None, "udp")) == {("overlay-device-down", "n1", None)}


# -- udp ------------------------------------------------------------------------------------------


def test_a_stopped_udp_daemon_is_named_with_its_pids():
    found = run(recorded("udp-daemon-stopped"))
    assert [(f.cause, f.node, f.hop) for f in found] == [("overlay-daemon-stopped", "n1", "flannel0")]
    assert all("state T" in e for e in found[0].evidence) and found[0].hint.startswith("ps -o pid,stat,cmd -p ")


def test_no_udp_daemon(udp):
    raw = udp["raw"]["n2"]
    raw["daemons"] = [d for d in raw["daemons"] if "flannel_udp" not in d["cmdline"]]
    found = run(udp)
    assert causes(found) == {("overlay-daemon-down", "n2", None)}
    assert found[0].evidence[0].startswith("3 daemons listed, none flanneld: /usr/lib/frr/zebra")


def test_a_daemon_that_does_not_hold_the_tun_device(udp):
    for d in udp["raw"]["n3"]["daemons"]:
        d["tun"] = [] if "flannel_udp" in d["cmdline"] else d["tun"]
    found = run(udp)
    assert causes(found) == {("overlay-daemon-detached", "n3", None)} and "tun []" in found[0].evidence[0]
    for d in udp["raw"]["n3"]["daemons"]:
        d["tun"] = None  # fds unreadable (not root): unknown, not detached
    assert run(udp) == []


def test_the_tun_device_down_or_missing_and_the_route_into_it(udp):
    link(udp, "n1", "flannel0")["flags"].remove("UP")
    assert causes(run(udp)) == {("overlay-device-down", "n1", None)}
    raw = udp["raw"]["n2"]
    raw["links"] = [x for x in raw["links"] if x["ifname"] != "flannel0"]
    raw["routes"] = [r for r in raw["routes"] if r.get("dev") != "flannel0"]
    found = causes(run(udp))
    assert ("overlay-device-missing", "n2", None) in found
    raw = udp["raw"]["n3"]
    raw["routes"] = [r for r in raw["routes"] if r.get("dev") != "flannel0"]
    assert {("route-missing", "n3", "n1"), ("route-missing", "n3", "n2")} <= causes(run(udp))


@pytest.mark.parametrize("mode", ["udp", "vxlan"])
def test_an_unresolved_encapsulation_destination(mode):
    data = recorded(mode)
    fresh = copy.deepcopy(data)
    for n in data["raw"]["n1"]["neigh"]:
        if n["dst"] == data["addresses"]["n2"]:
            n["state"], n["lladdr"] = ["FAILED"], None
    found = run(data)
    assert causes(found) == {("underlay-neighbour-failed", "n1", "n2")}
    assert found[0].evidence[0] == "neighbour 198.18.0.2 dev eth0 FAILED" and found[0].hop == "eth0"
    assert run(fresh) == []


# -- vxlan ----------------------------------------------------------------------------------------


def vtep_mac(data: dict, node: str) -> str:
    return data["leases"][subnet(data, node)]["BackendData"]["VtepMAC"]


def test_a_deleted_fdb_entry(vxlan):
    mac = vtep_mac(vxlan, "n2")
    fdb = vxlan["raw"]["n1"]["fdb"]["flannel.1"]
    fdb[:] = [e for e in fdb if e["mac"] != mac]
    found = run(vxlan)
    assert [(f.cause, f.node, f.peer, f.hop) for f in found] == [("fdb-missing", "n1", "n2", "flannel.1")]
    assert mac in found[0].message and found[0].hint == "bridge fdb show dev flannel.1"
    assert any(mac in e and "198.18.0.2" in e for e in found[0].evidence)  # the lease it relied on


def test_an_fdb_entry_to_the_wrong_node_names_both_addresses(vxlan):
    mac = vtep_mac(vxlan, "n2")
    next(e for e in vxlan["raw"]["n1"]["fdb"]["flannel.1"] if e["mac"] == mac)["dst"] = vxlan["addresses"]["n3"]
    found = run(vxlan)
    assert causes(found) == {("fdb-wrong-destination", "n1", "n2")}
    assert "to 198.18.0.3 (n3), but n2 is at 198.18.0.2" in found[0].message


def test_the_vxlan_neighbour_missing_or_wrong(vxlan):
    gw = subnet(vxlan, "n2").split("/")[0]
    neigh = vxlan["raw"]["n1"]["neigh"]
    entry = next(n for n in neigh if n["dst"] == gw)
    entry["lladdr"] = "02:00:00:00:00:01"
    found = run(vxlan)
    assert causes(found) == {("vxlan-neighbour-wrong", "n1", "n2")}
    assert found[0].extra == {"lladdr": "02:00:00:00:00:01", "expected": vtep_mac(vxlan, "n2")}
    neigh.remove(entry)
    found = run(vxlan)
    assert causes(found) == {("vxlan-neighbour-missing", "n1", "n2")} and found[0].hint == "ip neigh show dev flannel.1"


def test_the_vxlan_route_missing(vxlan):
    s3 = subnet(vxlan, "n3")
    vxlan["raw"]["n2"]["routes"] = [r for r in vxlan["raw"]["n2"]["routes"] if r["dst"] != s3]
    found = run(vxlan)
    assert causes(found) == {("vxlan-route-missing", "n2", "n3")}
    assert f"`{s3} via {s3.split('/')[0]} dev flannel.1 onlink`" in found[0].message
    assert found[0].hint.startswith("ip route get ")


def test_a_lease_whose_vtep_mac_is_not_the_device_s(vxlan):
    vxlan["leases"][subnet(vxlan, "n3")]["BackendData"]["VtepMAC"] = "02:00:00:00:00:03"
    found = run(vxlan)
    assert causes(found) == {("vtep-mac-mismatch", "n3", None)}
    assert found[0].extra["lease_mac"] == "02:00:00:00:00:03" and found[0].extra["device_mac"] == vtep_mac(
        recorded("vxlan"), "n3")


def test_vni_port_and_device_agree_across_nodes(vxlan):
    link(vxlan, "n3", "flannel.1")["linkinfo"]["info_data"]["port"] = 4789
    found = run(vxlan)
    assert causes(found) == {("vxlan-config-mismatch", "n3", None)}
    assert "port 4789 (others 8472)" in found[0].message and len(found[0].evidence) == 3
    vxlan["leases"][subnet(vxlan, "n1")]["BackendData"]["VNI"] = 7
    assert ("vxlan-config-mismatch", "n1", None) in causes(run(vxlan))


def test_check_pair_keeps_only_what_the_path_and_its_way_back_rely_on(vxlan):
    mac = vtep_mac(vxlan, "n2")
    fdb = vxlan["raw"]["n1"]["fdb"]["flannel.1"]
    fdb[:] = [e for e in fdb if e["mac"] != mac]
    link(vxlan, "n3", "docker0")["mtu"] = 1500
    nodes, table = build(vxlan)
    assert causes(controlplane.check_pair("n1", "n2", nodes, table, "vxlan")) == {("fdb-missing", "n1", "n2")}
    assert causes(controlplane.check_pair("n2", "n1", nodes, table, "vxlan")) == {("fdb-missing", "n1", "n2")}
    assert causes(controlplane.check_pair("n1", "n3", nodes, table, "vxlan")) == {("mtu-mismatch", "n3", None)}


# -- routed modes ---------------------------------------------------------------------------------


def route_to(data: dict, node: str, peer: str) -> dict:
    return next(r for r in data["raw"][node]["routes"] if r["dst"] == subnet(data, peer))


def test_host_gw_next_hop_must_be_the_peer():
    data = recorded("host-gw")
    route_to(data, "n1", "n2")["gateway"] = data["addresses"]["n3"]
    found = run(data)
    assert causes(found) == {("route-next-hop-wrong", "n1", "n2")}
    assert "via 198.18.0.3 (n3's address), not n2 at 198.18.0.2" in found[0].message
    route_to(data, "n1", "n2")["gateway"] = "198.18.0.254"  # an on-link router: not host-gw
    assert causes(run(data)) == {("route-next-hop-wrong", "n1", "n2")}


def test_static_may_route_via_an_on_link_router_but_not_via_another_node():
    data = recorded("static")
    route_to(data, "n1", "n2")["gateway"] = "198.18.0.254"
    assert run(data) == []
    route_to(data, "n1", "n2")["gateway"] = data["addresses"]["n3"]
    assert causes(run(data)) == {("route-next-hop-wrong", "n1", "n2")}


@pytest.mark.parametrize("mode", ["host-gw", "frr"])
def test_a_failed_next_hop_and_a_missing_route(mode):
    data = recorded(mode)
    for n in data["raw"]["n1"]["neigh"]:
        if n["dst"] == data["addresses"]["n3"]:
            n["state"] = ["INCOMPLETE"]
    found = run(data)
    assert causes(found) == {("neighbour-failed", "n1", "n3")}
    assert "INCOMPLETE" in found[0].evidence[0] and found[0].hint == "ip neigh show 198.18.0.3 dev eth0"
    data["raw"]["n3"]["routes"].remove(route_to(data, "n3", "n1"))
    assert ("route-missing", "n3", "n1") in causes(run(data))


# -- MTU ------------------------------------------------------------------------------------------


def test_a_bridge_mtu_above_the_path_is_named_with_every_size():
    found = run(recorded("udp-docker0-mtu-1500"))
    assert [(f.cause, f.node, f.hop) for f in found] == [("mtu-mismatch", "n1", "docker0")]
    f = found[0]
    assert f.message.startswith("pods on docker0 get MTU 1500 but the path carries 1472")
    assert f.extra == {"pod_mtu": 1500, "path_mtu": 1472}
    assert f.evidence[0] == "docker0 (pod bridge) mtu 1500" and "subnet.env FLANNEL_MTU=1472" in f.evidence
    assert "eth0 (underlay) mtu 1500 - 28 (udp overhead) = 1472" in f.evidence
    assert sum("(pod veth on docker0) mtu 1472" in e for e in f.evidence) == 2


def test_subnet_env_against_the_path(vxlan):
    raw = vxlan["raw"]["n2"]
    raw["subnet_env"] = raw["subnet_env"].replace("FLANNEL_MTU=1450", "FLANNEL_MTU=1500")
    found = run(vxlan)
    assert causes(found) == {("mtu-mismatch", "n2", None)} and found[0].extra["pod_mtu"] == 1500


def test_a_peer_whose_underlay_carries_less():
    data = recorded("host-gw")
    link(data, "n3", "eth0")["mtu"] = 1400
    found = causes(run(data))
    assert {("mtu-mismatch", "n1", "n3"), ("mtu-mismatch", "n2", "n3"), ("mtu-mismatch", "n3", None)} == found


# -- the pod bridge ---------------------------------------------------------------------------


def test_a_pod_veth_taken_out_of_the_bridge_is_named_by_doctor_not_by_a_trace(udp):
    veth = next(x for x in udp["raw"]["n2"]["links"] if x.get("master") == "docker0")
    del veth["master"]  # `ip link set <veth> nomaster`
    found = run(udp)
    assert [(f.cause, f.node, f.hop) for f in found] == [("pod-veth-not-in-bridge", "n2", veth["ifname"])]
    assert found[0].hint == f"ip -d link show {veth['ifname']}" and "no master" in found[0].evidence[0]
    nodes, table = build(udp)
    assert controlplane.check_pair("n1", "n2", nodes, table, "udp") == []  # the probe pods' path is intact


def test_a_routed_veth_with_an_address_is_not_a_pod_s(udp):
    underlay = link(udp, "n1", "eth0")  # the lab's underlay is a veth into the switch's namespace
    assert underlay["link_netnsid"] is not None and "master" not in underlay
    assert run(udp) == []


def test_every_finding_has_a_hint_and_evidence():
    data = recorded("vxlan")
    data["leases"] = {}
    for raw in data["raw"].values():
        raw["fdb"] = {"flannel.1": []}
        raw["neigh"] = []
    found = run(data)
    assert {f.cause for f in found} == {"lease-missing", "vxlan-neighbour-missing", "fdb-missing"}
    assert all(f.hint and f.evidence and f.as_dict()["node"] for f in found)


def test_lease_source_and_backend_data_are_kept():
    lease = parse_leases(recorded("vxlan")["leases"])
    one = next(iter(lease.values()))
    assert one.vni == 1 and one.vtep_mac and one.backend == "vxlan"
    assert Lease(one.subnet, one.public_ip, "vxlan", one.vtep_mac, 1, ttl_s=5, source="x") == one


def test_doctor_prints_findings_with_node_strings_as_text():
    from rich.console import Console

    from netbench import doctor

    data = recorded("udp-docker0-mtu-1500")
    data["raw"]["n1"]["hostname"] = "[red]n1[/red]"
    nodes, table = build(data)
    found = controlplane.check(nodes, table, "udp")
    node = {"hostname": nodes["n1"].hostname, "address": "198.18.0.1", "mode": "udp[/]", "tools": {"ip": "/bin/ip"},
            "uid": 0, "privileged": True, "ip_forward": True, "interfaces": [], "pod_subnet": "10.1.136.0/24",
            "bridge": "docker0", "subnet_env": None, "lease": None, "peer_routes": {}, "evidence": ["[bold]x"],
            "problems": [], "findings": [f.as_dict() for f in found]}
    console = Console(record=True, width=200)
    doctor.render({"nodes": {"n1": node}, "healthy": False, "mode": "udp", "findings": node["findings"],
                   "lease_source": "etcd http://198.18.0.1:2379"}, console)
    out = console.export_text()
    assert "[red]n1[/red]" in out and "udp[/]" in out and "[bold]x" in out
    assert "n1: mtu-mismatch: pods on docker0 get MTU 1500 but the path carries 1472" in out
    assert "docker0 (pod bridge) mtu 1500" in out and "see: ip -o link show" in out
    assert "problems found (1 finding)" in out
