"""The lab's data paths as classes (no root: plans and waits on a fake lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netbench import frr
from netbench.errors import LabError
from netbench.flannel import Mode
from netbench.lab import datapaths
from netbench.lab.datapaths import frr as frr_path
from netbench.lab.node import LabNode
from netbench.lab.state import LabState
from netbench.lab.topology import LabTopology, router_address, segment_network


class FakeLab:
    """The LabView a data path sees, over a topology that was never built."""

    def __init__(self, topo: LabTopology, routing: str = "bgp") -> None:
        self.state = LabState.from_topology(topo)
        self.state.routing = routing
        self.probes_dir = Path("/nonexistent")
        self.topology = topo
        self.saved = 0

    @property
    def nodes(self) -> list[LabNode]:
        return [LabNode(n.spec, Path("/nonexistent")) for n in self.state.nodes]

    @property
    def router(self) -> LabNode | None:
        return LabNode(self.state.router.spec, Path("/nonexistent")) if self.state.router else None

    def save(self) -> None:
        self.saved += 1


def test_one_data_path_per_mode_declared_by_the_mode():
    assert sorted(datapaths.BY_MODE, key=list(Mode).index) == list(Mode)
    assert len(datapaths.ALL) == len(Mode)
    for mode in Mode:
        path = datapaths.of(mode)
        assert path.mode is mode and path.device == mode.device and path.overhead == mode.overhead
    assert datapaths.of(Mode.udp).daemon == "flannel-udp"
    assert type(datapaths.ALL[0]) is datapaths.Frr  # cleared first: zebra would re-install swept routes


def test_frr_plans_full_mesh_on_one_segment():
    topo = LabTopology.build(3, Mode.frr, seed=1)
    got = datapaths.Frr().plans(FakeLab(topo))
    addresses = [n.address for n in topo.nodes]
    want = [frr.FrrPlan(n.name, "bgp", n.address, (str(segment_network(0)),), ("eth0",), n.subnet,
                        tuple(a for a in addresses if a != n.address), pod_network="10.1.0.0/16")
            for n in topo.nodes]
    assert [plan for _, plan in got] == want
    assert [node.name for node, _ in got] == ["n1", "n2", "n3"]


def test_frr_plans_reflect_through_the_router_across_segments():
    topo = LabTopology.build(4, Mode.frr, seed=1, segments=2)
    got = datapaths.Frr().plans(FakeLab(topo))
    router = got[0][1]
    assert got[0][0].name == topo.router.name
    assert router == frr.FrrPlan(topo.router.name, "bgp", topo.router.address,
                                 (str(segment_network(0)), str(segment_network(1))), ("eth0", "eth1"), None,
                                 tuple(n.address for n in topo.nodes), reflector=True, pod_network="10.1.0.0/16")
    for (node, plan), spec in zip(got[1:], topo.nodes, strict=True):
        assert node.name == spec.name and plan.bgp_peers == (router_address(spec.segment),)
        assert plan.networks == (str(segment_network(spec.segment)),) and plan.pod_subnet == spec.subnet


def test_frr_check_refuses_a_lab_built_without_frr():
    lab = FakeLab(LabTopology.build(2, Mode.frr, seed=1))
    with pytest.raises(LabError, match="frr mode needs FRR"):
        datapaths.Frr().check(lab)


def test_frr_waits_name_what_was_not_learned_and_what_was_left(monkeypatch):
    lab = FakeLab(LabTopology.build(2, Mode.frr, seed=1), routing="ospf")
    monkeypatch.setattr(frr_path, "_learned", lambda node, proto: {"10.9.9.0/24"})
    monkeypatch.setattr(frr, "neighbours", lambda node, routing: {})
    path = datapaths.Frr()
    with pytest.raises(LabError, match=r"n1: FRR \(ospf\) did not learn 10\.1\..* within 0s; neighbours: none"):
        path._wait_learned(lab, present=True, timeout=0)
    lab.state.frr_applied = True
    monkeypatch.setattr(frr, "remove", lambda node, plan: None)
    with pytest.raises(LabError, match="n1: routes learned over ospf still in the kernel 0s .*: 10.9.9.0/24"):
        path._wait_learned(lab, present=False, timeout=0)


def test_frr_clear_is_a_no_op_when_nothing_was_applied(monkeypatch):
    lab = FakeLab(LabTopology.build(2, Mode.frr, seed=1))
    monkeypatch.setattr(frr, "remove", lambda node, plan: pytest.fail("nothing to remove"))
    datapaths.Frr().clear(lab)
    assert lab.saved == 0
