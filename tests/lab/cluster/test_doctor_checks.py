"""`netbench doctor` checks the control plane cluster-wide: healthy (exit 0) on a healthy lab in each
mode; each fault made by hand inside a node (plain ip, bridge, etcdctl, kill, as a person would, not
`lab fault`) gives exit 1 and a finding naming the cause, the node and its evidence. Every fault is
undone in `finally`, so the lab is left as it was found."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from netbench import facts, flannel
from netbench.flannel import Mode


def doctor(*args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "netbench", "doctor", "--json", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def assert_healthy() -> None:
    code, report = doctor()
    assert (code, report["findings"], report["healthy"]) == (0, [], True), json.dumps(report["findings"], indent=1)


def finding(report: dict, cause: str, node: str, peer: str | None = None) -> dict:
    """The finding with that cause on that node (and peer), listed under the node as well."""
    found = [f for f in report["findings"] if (f["cause"], f["node"]) == (cause, node)
             and (peer is None or f["peer"] == peer)]
    assert found, f"no {cause} on {node}: {json.dumps(report['findings'], indent=1)}"
    assert found[0] in report["nodes"][node]["findings"] and not report["healthy"]
    print(f"doctor: {cause} on {node}: {found[0]['message']} | {found[0]['evidence'][0]}")  # shown with -s
    return found[0]


def sh(lab, node: str, *argv: str) -> str:
    return lab.node(node).run(list(argv)).stdout


def etcdctl(lab, *args: str) -> str:
    return sh(lab, "n1", "etcdctl", f"--endpoints=http://{lab.node('n1').spec.address}:2379", *args)


def lease_record(lab, node: str) -> tuple[str, str, int]:
    """(key, value, etcd lease id) of a node's flannel lease, to put it back exactly."""
    key = flannel.subnet_key(flannel.DEFAULT_PREFIX, lab.node(node).spec.subnet)
    kv = json.loads(etcdctl(lab, "get", key, "-w", "json"))["kvs"][0]
    return key, base64.b64decode(kv["value"]).decode(), int(kv.get("lease", 0))


def put_back(lab, key: str, value: str, lease_id: int) -> None:
    etcdctl(lab, "put", *([f"--lease={lease_id:x}"] if lease_id else []), key, value)


def udp_pids(lab, node: str) -> list[str]:
    return [str(d["pid"]) for d in facts.gather(lab.node(node))["daemons"] if "flannel_udp" in d["cmdline"]]


# -- udp ------------------------------------------------------------------------------------------


def test_udp_healthy(in_mode):
    in_mode(Mode.udp)
    assert_healthy()


def test_udp_lease_deleted_from_etcd(in_mode):
    lab = in_mode(Mode.udp)
    key, value, lease_id = lease_record(lab, "n2")
    etcdctl(lab, "del", key)
    try:
        code, report = doctor()
        f = finding(report, "lease-missing", "n1", "n2")
        assert code == 1 and lab.node("n2").spec.subnet in f["message"]
        assert any(lab.node("n2").spec.subnet in e for e in f["evidence"]) and f["hint"].startswith("etcdctl ")
        finding(report, "lease-missing", "n3", "n2")
    finally:
        put_back(lab, key, value, lease_id)
    assert_healthy()


def test_udp_daemon_stopped_then_killed(in_mode):
    lab = in_mode(Mode.udp)
    pids = udp_pids(lab, "n1")
    sh(lab, "n1", "kill", "-STOP", *pids)
    try:
        code, report = doctor()
        f = finding(report, "overlay-daemon-stopped", "n1")
        assert code == 1 and f["hop"] == "flannel0" and any(f"pid {pids[0]} state T" in e for e in f["evidence"])
    finally:
        sh(lab, "n1", "kill", "-CONT", *pids)
    sh(lab, "n1", "kill", *pids)  # flannel0 goes with the last process holding it
    try:
        code, report = doctor()
        assert code == 1
        finding(report, "overlay-daemon-down", "n1")
        assert "no tun device" in finding(report, "overlay-device-missing", "n1")["message"]
    finally:
        lab.set_mode(Mode.udp)
    assert_healthy()


def test_udp_bridge_mtu_above_the_tunnel(in_mode):
    lab = in_mode(Mode.udp)
    sh(lab, "n1", "ip", "link", "set", "docker0", "mtu", "1500")
    try:
        code, report = doctor()
        f = finding(report, "mtu-mismatch", "n1")
        assert code == 1 and f["message"].startswith("pods on docker0 get MTU 1500 but the path carries 1472")
        assert "docker0 (pod bridge) mtu 1500" in f["evidence"] and f["extra"] == {"pod_mtu": 1500, "path_mtu": 1472}
        text = subprocess.run([sys.executable, "-m", "netbench", "doctor"], capture_output=True, text=True,
                              timeout=60)
        assert text.returncode == 1 and "n1: mtu-mismatch" in text.stdout and "problems found" in text.stdout
    finally:
        sh(lab, "n1", "ip", "link", "set", "docker0", "mtu", "1472")
    assert_healthy()


# -- vxlan ----------------------------------------------------------------------------------------


def test_a_pod_veth_taken_out_of_the_bridge(in_mode):
    lab = in_mode(Mode.udp)
    bridge = lab.topology.flavour.bridge
    veth = json.loads(sh(lab, "n2", "ip", "-j", "link", "show", "master", bridge))[0]["ifname"]
    sh(lab, "n2", "ip", "link", "set", veth, "nomaster")
    try:
        code, report = doctor()
        f = finding(report, "pod-veth-not-in-bridge", "n2")
        assert code == 1 and f["hop"] == veth and f"ip -d link show {veth}" == f["hint"], f
    finally:
        sh(lab, "n2", "ip", "link", "set", veth, "master", bridge)
    assert_healthy()


def test_vxlan_healthy(in_mode):
    in_mode(Mode.vxlan)
    assert_healthy()


def test_vxlan_fdb_entry_deleted(in_mode):
    lab = in_mode(Mode.vxlan)
    mac, n2 = lab.state.vtep_macs["n2"], lab.node("n2").spec.address
    sh(lab, "n1", "bridge", "fdb", "del", mac, "dev", "flannel.1", "dst", n2)
    try:
        code, report = doctor()
        f = finding(report, "fdb-missing", "n1", "n2")
        assert code == 1 and mac in f["message"] and f["hop"] == "flannel.1"
        assert any(mac in e and n2 in e for e in f["evidence"])  # n2's lease: VtepMAC and PublicIP
    finally:
        sh(lab, "n1", "bridge", "fdb", "add", mac, "dev", "flannel.1", "dst", n2, "self", "permanent")
    assert_healthy()


def test_vxlan_fdb_entry_to_the_wrong_node(in_mode):
    lab = in_mode(Mode.vxlan)
    mac, n2, n3 = lab.state.vtep_macs["n2"], lab.node("n2").spec.address, lab.node("n3").spec.address
    sh(lab, "n1", "bridge", "fdb", "replace", mac, "dev", "flannel.1", "dst", n3, "self", "permanent")
    try:
        code, report = doctor()
        f = finding(report, "fdb-wrong-destination", "n1", "n2")
        assert code == 1 and f"to {n3} (n3), but n2 is at {n2}" in f["message"]
    finally:
        sh(lab, "n1", "bridge", "fdb", "replace", mac, "dev", "flannel.1", "dst", n2, "self", "permanent")
    assert_healthy()


def test_vxlan_neighbour_deleted(in_mode):
    lab = in_mode(Mode.vxlan)
    gw, mac = lab.node("n3").spec.subnet.split("/")[0], lab.state.vtep_macs["n3"]
    sh(lab, "n2", "ip", "neigh", "del", gw, "dev", "flannel.1")
    try:
        code, report = doctor()
        f = finding(report, "vxlan-neighbour-missing", "n2", "n3")
        assert code == 1 and f"no neighbour {gw} dev flannel.1" in f["evidence"]
    finally:
        sh(lab, "n2", "ip", "neigh", "replace", gw, "lladdr", mac, "dev", "flannel.1", "nud", "permanent")
    assert_healthy()


def test_vxlan_lease_naming_another_node(in_mode):
    lab = in_mode(Mode.vxlan)
    key, value, lease_id = lease_record(lab, "n2")
    wrong = json.loads(value) | {"PublicIP": lab.node("n3").spec.address}
    etcdctl(lab, "put", f"--lease={lease_id:x}", key, flannel.dumps(wrong))
    try:
        code, report = doctor()
        f = finding(report, "lease-wrong-address", "n1", "n2")
        assert code == 1 and "198.18.0.3" in f["message"] and "198.18.0.2" in f["message"]
    finally:
        put_back(lab, key, value, lease_id)
    assert_healthy()


# -- routed modes ---------------------------------------------------------------------------------


def test_host_gw_next_hop_through_the_wrong_node(in_mode):
    lab = in_mode(Mode.host_gw)
    assert_healthy()
    subnet, n2, n3 = lab.node("n2").spec.subnet, lab.node("n2").spec.address, lab.node("n3").spec.address
    sh(lab, "n1", "ip", "route", "replace", subnet, "via", n3, "dev", "eth0")
    try:
        code, report = doctor()
        f = finding(report, "route-next-hop-wrong", "n1", "n2")
        assert code == 1 and f"via {n3} (n3's address), not n2 at {n2}" in f["message"]
        assert f["evidence"][0].startswith("ip route get ") and f["hint"].startswith("ip route get ")
    finally:
        sh(lab, "n1", "ip", "route", "replace", subnet, "via", n2, "dev", "eth0")
    assert_healthy()


@pytest.mark.parametrize("mode", [Mode.static, Mode.frr], ids=lambda m: m.value)
def test_routed_modes_healthy(in_mode, mode):
    in_mode(mode)
    assert_healthy()
