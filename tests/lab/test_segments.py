"""A routed underlay: n1 and n3 on one L2 segment, n2 on another, joined by a router namespace.
flannel's host-gw cannot work across it (its next hop must be on-link) and trace must say so;
static routes via the router, FRR, and the overlays must all deliver."""

import itertools
import json
import subprocess
import sys

import pytest

from netbench.flannel import Mode
from netbench.lab.builder import running_lab
from netbench.lab.topology import LabTopology, router_address
from tests.lab.helpers import ping


@pytest.fixture(scope="module")
def lab():
    with running_lab(LabTopology.build(3, Mode.host_gw, segments=2)) as lab:
        yield lab


def reachable(lab) -> dict[str, bool]:
    names = [n.name for n in lab.nodes]
    return {f"{s}->{d}": ping(lab, s, lab.pod_ip(d), count=1).ok for s, d in itertools.permutations(names, 2)}


def test_the_nodes_sit_on_two_segments_behind_one_router(lab):
    assert [(n.name, n.spec.address, n.spec.segment) for n in lab.nodes] == [
        ("n1", "198.18.0.1", 0), ("n2", "198.18.1.2", 1), ("n3", "198.18.0.3", 0)]
    hops = lab.node("n1").run(["ip", "-j", "route", "get", "198.18.1.2"]).stdout
    assert json.loads(hops)[0]["gateway"] == router_address(0)


def test_host_gw_fails_across_segments_and_trace_says_the_next_hop_is_not_on_link(lab):
    lab.set_mode(Mode.host_gw)
    assert reachable(lab) == {"n1->n2": False, "n1->n3": True, "n2->n1": False, "n2->n3": False,
                              "n3->n1": True, "n3->n2": False}
    assert "Error adding route to" in (lab.node("n1").dir / "log" / "host-gw.log").read_text()
    proc = subprocess.run([sys.executable, "-m", "netbench", "trace", "n1", "n2", "--no-mtu", "--probes", "5",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-1500:]
    verdict = json.loads(proc.stdout)["traces"][0]["verdicts"][0]
    assert verdict["kind"] == "not-on-link" and verdict["node"] == "n1", verdict
    assert "198.18.1.2" in verdict["message"]


@pytest.mark.parametrize("mode", [Mode.static, Mode.frr, Mode.udp, Mode.vxlan], ids=lambda m: m.value)
def test_routed_and_overlay_modes_deliver_between_every_pod_pair(lab, mode):
    lab.set_mode(mode)
    seen = reachable(lab)
    assert all(seen.values()), seen
    if mode in (Mode.static, Mode.frr):  # n1 reaches n2's pods through the router, n3's directly
        routes = {r["dst"]: r for r in json.loads(lab.node("n1").run(["ip", "-j", "route"]).stdout)}
        assert routes[lab.node("n2").spec.subnet]["gateway"] == router_address(0)
        assert routes[lab.node("n3").spec.subnet]["gateway"] == lab.node("n3").spec.address
        assert {routes[lab.node(n).spec.subnet]["protocol"] for n in ("n2", "n3")} == {
            "static" if mode is Mode.static else "ospf"}


def test_ibgp_across_segments_learns_through_the_route_reflector(lab):
    lab.set_mode(Mode.frr, routing="bgp")
    try:
        seen = reachable(lab)
        assert all(seen.values()), seen
        routes = {r["dst"]: r for r in json.loads(lab.node("n1").run(["ip", "-j", "route"]).stdout)}
        far = routes[lab.node("n2").spec.subnet]  # reflected by the router; next hop resolved through it
        assert far["protocol"] == "bgp" and far["gateway"] == router_address(0), far
    finally:
        lab.set_mode(Mode.none, routing="ospf")
