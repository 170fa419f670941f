"""`netbench trace` names the cause where probes stop, from the control plane the nodes hold: each
fault is made by hand inside a node (etcdctl, bridge, nft, ip — as a person or a broken node would,
not `lab fault`), and the primary verdict names the cause, the node, the hop and its evidence. Every
fault is undone in `finally`; the last test checks the path healthy again (each test restores by hand, so
a restore that failed would show in the next test)."""

from __future__ import annotations

import json
import subprocess
import sys

from netbench import flannel
from netbench.flannel import Mode


def trace(*args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "netbench", "trace", *args, "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)["traces"][0]


def primary(t: dict) -> dict:
    failing = [v for v in t["verdicts"] if not v["ok"]]
    assert failing, t["verdicts"]
    print(f"trace: {failing[0]['kind']} on {failing[0]['node']} at {failing[0]['hop']}: {failing[0]['message']}"
          f" | {failing[0]['evidence'][:3]}")  # the closing note's table, with -s
    return failing[0]


def sh(lab, node: str, *argv: str) -> str:
    return lab.node(node).run(list(argv)).stdout


def healthy_again() -> None:
    code, t = trace("n1", "n2", "--no-mtu", "--probes", "5")
    assert code == 0 and [v["kind"] for v in t["verdicts"]] == ["delivered"], t["verdicts"]


def test_udp_lease_deleted_from_etcd_is_named_on_the_source(in_mode):
    lab = in_mode(Mode.udp)
    n2 = lab.node("n2").spec
    key = flannel.subnet_key(flannel.DEFAULT_PREFIX, n2.subnet)
    sh(lab, "n1", "etcdctl", f"--endpoints=http://{lab.node('n1').spec.address}:2379", "del", key)
    try:
        code, t = trace("n1", "n2", "--no-mtu")
    finally:
        lab.set_mode(Mode.udp)  # flannel would renew it; the lab writes every lease again
    v = primary(t)
    assert code == 1 and (v["kind"], v["node"], v["hop"]) == ("lease-missing", "n1", "n1:flannel0:out"), v
    assert any(n2.subnet in e for e in v["evidence"]) and v["hint"], v
    assert any(e.startswith("from the path alone: overlay-daemon-down") for e in v["evidence"]), v


def test_vxlan_fdb_entry_deleted_on_the_source(in_mode):
    lab = in_mode(Mode.vxlan)
    mac, n2 = lab.state.vtep_macs["n2"], lab.node("n2").spec.address
    sh(lab, "n1", "bridge", "fdb", "del", mac, "dev", "flannel.1", "dst", n2)
    try:
        code, t = trace("n1", "n2", "--no-mtu")
    finally:
        sh(lab, "n1", "bridge", "fdb", "append", mac, "dev", "flannel.1", "dst", n2, "self", "permanent")
    v = primary(t)
    assert code == 1 and (v["kind"], v["node"], v["hop"]) == ("fdb-missing", "n1", "n1:flannel.1:out"), v
    assert any(mac in e for e in v["evidence"]) and "bridge fdb" in v["hint"], v


def test_vxlan_fdb_pointing_at_the_wrong_node(in_mode):
    lab = in_mode(Mode.vxlan)
    mac, n2, n3 = lab.state.vtep_macs["n2"], lab.node("n2").spec.address, lab.node("n3").spec.address
    sh(lab, "n1", "bridge", "fdb", "replace", mac, "dev", "flannel.1", "dst", n3, "self", "permanent")
    try:
        code, t = trace("n1", "n2", "--no-mtu")
    finally:
        sh(lab, "n1", "bridge", "fdb", "replace", mac, "dev", "flannel.1", "dst", n2, "self", "permanent")
    v = primary(t)
    assert code == 1 and (v["kind"], v["node"]) == ("encap-wrong-destination", "n1"), v
    assert n3 in v["message"] and n2 in v["message"], v  # both addresses named
    kinds = [x["kind"] for x in t["verdicts"]]
    assert "fdb-wrong-destination" in kinds, kinds  # and the control plane says why


def test_destination_forward_chain_with_policy_drop_is_named(in_mode):
    lab = in_mode(Mode.vxlan)
    sh(lab, "n2", "nft", "add", "table", "inet", "nbtest")
    sh(lab, "n2", "nft", "add", "chain", "inet", "nbtest", "forward",
       "{ type filter hook forward priority 0 ; policy drop ; }")
    try:
        code, t = trace("n1", "n2", "--no-mtu")
    finally:
        sh(lab, "n2", "nft", "delete", "table", "inet", "nbtest")
    v = primary(t)
    assert code == 1 and (v["kind"], v["node"]) == ("firewall-drop", "n2"), v
    assert v["hop"] == "n2:flannel.1:in", v
    assert any("inet nbtest forward: policy drop" in e for e in v["evidence"]), v
    assert v["hint"] == "nft -a list chain inet nbtest forward", v


def test_a_pod_bridge_mtu_above_the_overlay_is_a_mismatch_with_the_sizes(in_mode):
    lab = in_mode(Mode.udp)
    sh(lab, "n1", "ip", "link", "set", "docker0", "mtu", "1500")
    try:
        code, t = trace("n1", "n2")
    finally:
        sh(lab, "n1", "ip", "link", "set", "docker0", "mtu", str(Mode.udp.mtu()))
    assert t["verdicts"][0]["kind"] == "delivered"  # small probes cross …
    v = primary(t)  # … but the pods' size does not
    assert code == 1 and (v["kind"], v["node"]) == ("mtu-mismatch", "n1"), v
    assert "1500" in v["message"] and "1472" in v["message"], v
    assert t["path_mtu"]["expected_mtu"] == 1500 and t["path_mtu"]["largest_delivered"] == 1472


def neighbour_state(lab, node: str, address: str, dev: str) -> str:
    entries = json.loads(sh(lab, node, "ip", "-j", "neigh", "show", address, "dev", dev) or "[]")
    return ",".join(entries[0].get("state", [])) if entries else ""


def test_vxlan_peer_that_stopped_answering_arp_is_an_unresolved_underlay_neighbour(in_mode):
    lab = in_mode(Mode.vxlan)
    under, n2 = lab.topology.flavour.underlay, lab.node("n2").spec.address
    sh(lab, "n2", "ip", "link", "set", under, "arp", "off")  # a node that stopped answering ARP
    sh(lab, "n1", "ip", "neigh", "flush", "to", n2, "dev", under)
    try:
        pod2 = lab.pod_ip("n2")
        for _ in range(20):  # what the node's own pods' traffic would do: resolve, fail, stay FAILED
            lab.node("n1").run(["ip", "netns", "exec", "nb-pod1", "ping", "-c", "1", "-W", "1", pod2], check=False)
            if neighbour_state(lab, "n1", n2, under) == "FAILED":
                break
        assert neighbour_state(lab, "n1", n2, under) == "FAILED"
        code, t = trace("n1", "n2", "--no-mtu", "--probes", "5")
    finally:
        sh(lab, "n2", "ip", "link", "set", under, "arp", "on")
        for node in ("n1", "n2"):
            sh(lab, node, "ip", "neigh", "flush", "dev", under)
    v = primary(t)
    assert code == 1 and (v["kind"], v["node"], v["hop"]) == ("underlay-neighbour-failed", "n1", "n1:flannel.1:out"), v
    assert any(n2 in e and "FAILED" in e for e in v["evidence"]), v
    assert v["hint"] == f"ip neigh show {n2} dev {under}", v
    healthy_again()


def test_a_destination_bridge_that_is_down_is_the_verdict_not_an_error(in_mode):
    lab = in_mode(Mode.host_gw)
    sh(lab, "n2", "ip", "link", "set", "docker0", "down")
    try:
        code, t = trace("n1", "n2", "--no-mtu")
    finally:
        sh(lab, "n2", "ip", "link", "set", "docker0", "up")
    v = primary(t)
    assert code == 1 and (v["kind"], v["node"]) == ("device-down", "n2"), v
    assert any("docker0" in e and "DOWN" in e for e in v["evidence"]), v
    healthy_again()
