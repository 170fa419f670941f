"""Routed pod networks on the lab: the frr mode (real FRR, OSPF or iBGP) and `netbench routes
apply/revert`, which writes static routes or FRR config over SSH and must undo it exactly."""

import json
import subprocess
import sys
import time

import pytest

from netbench import frr
from netbench.flannel import Mode
from tests.lab.helpers import ping, ttl_of


def netbench(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=timeout)


def routes(node) -> list[dict]:
    return json.loads(node.run(["ip", "-j", "route", "show", "table", "main"]).stdout)


def snapshot(lab) -> dict:
    """Everything routes apply may touch: every route of every table, and FRR's running config."""
    return {n.name: (n.run(["ip", "-d", "-j", "route", "show", "table", "all"]).stdout,
                     n.run(["vtysh", "-c", "show running-config"]).stdout) for n in lab.nodes}


@pytest.mark.parametrize("routing", ["ospf", "bgp"])
def test_frr_learns_every_peers_pod_subnet(lab, routing):
    lab.set_mode(Mode.frr, routing=routing)
    nodes = {n.name: n for n in lab.nodes}
    for name, node in nodes.items():
        peers = {p.spec.address: p for p in nodes.values() if p.name != name}
        # adjacency, as FRR itself reports it through vtysh (the routes can come through the DR before
        # every adjacency has finished its database exchange: give those a few seconds)
        deadline = time.monotonic() + 15
        while True:
            states = frr.neighbours(node, routing)
            up = all(s.startswith("Full") if routing == "ospf" else s == "Established" for s in states.values())
            if (up and set(states) == set(peers)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(states) == set(peers) and up, states
        # the kernel holds what FRR learned: each peer's /24 via that peer, proto ospf / bgp
        learned = {r["dst"]: r for r in routes(node) if r.get("protocol") == routing}
        for address, peer in peers.items():
            assert learned[peer.spec.subnet]["gateway"] == address, learned
        assert len(learned) == len(peers)  # its own subnet and the underlay are not learned
        # only the pod network may reach the kernel, and OSPF forms adjacencies only with the cluster's key
        config = node.run(["vtysh", "-c", "show running-config"]).stdout
        assert f"ip prefix-list {frr.POD_NETWORK} seq 5 permit {lab.topology.flavour.pod_network} le 32" in config
        assert f"ip protocol {routing} route-map {frr.IMPORT}" in config
        assert ("ip ospf authentication message-digest" in config) is (routing == "ospf")
    assert ttl_of(ping(lab, "n1", lab.pod_ip("n3"))) == 62  # routed by two kernels, no overlay
    # and netbench's facts name the mode and where the routes came from
    report = json.loads(netbench("doctor", "--json").stdout)
    for node_report in report["nodes"].values():
        assert node_report["mode"] == "frr", node_report
        assert any(f"learned over {routing.upper()} from" in e for e in node_report["evidence"]), node_report
        assert len(node_report["learned_routes"]) == 2 and all(
            r["source"].startswith(f"learned over {routing.upper()}") for r in node_report["learned_routes"])


@pytest.mark.parametrize("kind, mode", [("static", Mode.udp), ("static", Mode.host_gw), ("frr", Mode.udp)],
                         ids=["static-over-udp", "static-replacing-host-gw", "frr-over-udp"])
def test_routes_apply_then_revert_leaves_every_node_as_it_was(in_mode, kind, mode):
    lab = in_mode(mode)
    before = snapshot(lab)
    ttl = 60 if mode is Mode.udp else 62  # through flanneld's TUN, one hop more
    assert ttl_of(ping(lab, "n1", lab.pod_ip("n2"))) == ttl
    applied = netbench("routes", "apply", kind)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    try:
        proto = "static" if kind == "static" else "ospf"
        for node in lab.nodes:
            mine = {r["dst"] for r in routes(node) if r.get("protocol") == proto}
            assert mine == {p.spec.subnet for p in lab.nodes if p.name != node.name}, routes(node)
        # the /24 routes win over flannel's /16 to flannel0: pods now talk without the overlay
        assert ttl_of(ping(lab, "n1", lab.pod_ip("n2"))) == 62
        again = netbench("routes", "apply", kind)
        assert again.returncode == 1 and "revert" in again.stdout  # one record per node: never stacked
    finally:
        reverted = netbench("routes", "revert")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert snapshot(lab) == before  # host-gw's own routes (proto boot) are back, exactly
    assert ttl_of(ping(lab, "n1", lab.pod_ip("n2"))) == ttl
    assert lab.node("n1").run(["test", "-e", "/run/netbench"], check=False).exit_code == 1
