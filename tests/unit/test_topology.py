import ipaddress
import random

import pytest

from netbench.errors import InvalidValue, UserError
from netbench.flannel import Mode
from netbench.lab.state import LabState
from netbench.lab.topology import (
    FLANNEL,
    FLAVOURS,
    K8S,
    UNDERLAY,
    UNDERLAY_SPAN,
    Flavour,
    LabTopology,
    LinkShape,
    allocate_subnets,
    flavour_named,
)


def test_three_node_plan():
    topo = LabTopology.build(3, Mode.vxlan, seed=7)
    assert [n.name for n in topo.nodes] == ["n1", "n2", "n3"]
    assert [n.address for n in topo.nodes] == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert topo.etcd_node.name == "n1" and topo.etcd_endpoint == "http://198.18.0.1:2379"
    subnets = [ipaddress.ip_network(n.subnet) for n in topo.nodes]
    assert len(set(subnets)) == 3
    assert all(s.subnet_of(FLANNEL.pod_network) and s.prefixlen == 24 for s in subnets)
    assert all(ipaddress.ip_address(n.address) in UNDERLAY for n in topo.nodes)
    node = topo.nodes[0]
    net = ipaddress.ip_network(node.subnet)
    assert node.bridge_address == f"{net.network_address + 1}/24"
    assert node.pod_address(1) == f"{net.network_address + 2}/24"


def test_leases_avoid_first_and_last_subnet_and_never_repeat():
    subnets = allocate_subnets(254, random.Random(1))
    assert len(set(subnets)) == 254
    assert "10.1.0.0/24" not in subnets and "10.1.255.0/24" not in subnets


def test_seed_makes_leases_reproducible():
    assert LabTopology.build(3, seed=5).nodes == LabTopology.build(3, seed=5).nodes


@pytest.mark.parametrize("nodes", [1, 51])
def test_node_count_bounds(nodes):
    with pytest.raises(ValueError, match="nodes"):
        LabTopology.build(nodes)


@pytest.mark.parametrize("kwargs, field", [
    ({"rate": "fast"}, "rate"), ({"delay": "2"}, "delay"), ({"loss": 120.0}, "loss")])
def test_link_shape_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LinkShape(**kwargs)


def test_link_shape_accepts_tc_units():
    assert LinkShape(rate="1gbit", delay="500us", loss=0.5).shaped
    assert not LinkShape().shaped


# -- flavours: the names on the nodes ------------------------------------------------------------


def test_default_flavour_is_the_seeds_names():
    topo = LabTopology.build(3, seed=7)
    assert topo.flavour is FLANNEL and topo.mode is Mode.udp
    assert (FLANNEL.bridge, FLANNEL.underlay, str(FLANNEL.pod_network)) == ("docker0", "eth0", "10.1.0.0/16")
    assert LabTopology(nodes=topo.nodes).flavour is FLANNEL


def test_k8s_flavour_has_kube_flannels_names_and_runs_vxlan():
    topo = LabTopology.build(3, seed=7, flavour="k8s")
    assert topo.flavour is K8S and topo.mode is Mode.vxlan
    assert (K8S.bridge, str(K8S.pod_network), K8S.subnet_len) == ("cni0", "10.244.0.0/16", 24)
    assert K8S.underlay != "eth0" and len(K8S.underlay) <= 15
    subnets = [ipaddress.ip_network(n.subnet) for n in topo.nodes]
    assert len(set(subnets)) == 3 and all(s.subnet_of(K8S.pod_network) and s.prefixlen == 24 for s in subnets)
    assert all(ipaddress.ip_address(n.address) in UNDERLAY for n in topo.nodes)  # underlay addresses unchanged
    assert topo.nodes[0].bridge_address.startswith("10.244.")


def test_flavour_changes_names_only():
    flannel, k8s = LabTopology.build(3, seed=5), LabTopology.build(3, seed=5, flavour=K8S)
    assert [n.address for n in flannel.nodes] == [n.address for n in k8s.nodes]
    assert [n.subnet.split(".")[2:] for n in flannel.nodes] == [n.subnet.split(".")[2:] for n in k8s.nodes]
    assert LabTopology.build(3, Mode.udp, seed=5, flavour="k8s").mode is Mode.udp  # an explicit mode wins


def test_unknown_flavour_is_refused_with_the_choices():
    with pytest.raises(InvalidValue, match="flavour 'openshift': choose one of flannel, k8s"):
        LabTopology.build(3, flavour="openshift")
    assert flavour_named("k8s") is K8S and set(FLAVOURS) == {"flannel", "k8s"}


@pytest.mark.parametrize("kwargs, message", [
    ({"bridge": "a-bridge-name-too-long"}, "not an interface name"),
    ({"bridge": "cni 0"}, "not an interface name"),
    ({"underlay": "cni0"}, "two names of their own"),
    ({"underlay": "flannel.1"}, "two names of their own"),
    ({"bridge": "nb-br"}, "two names of their own"),
    ({"subnet_len": 16}, "do not fit"),
    ({"pod_network": ipaddress.ip_network("198.18.0.0/16")}, "outside the lab's pod networks"),
    ({"pod_network": ipaddress.ip_network("192.168.0.0/16")}, "outside the lab's pod networks"),
])
def test_a_flavour_validates_its_names(kwargs, message):
    base = {"name": "x", "bridge": "cni0", "underlay": "ens4", "pod_network": ipaddress.ip_network("10.244.0.0/16")}
    with pytest.raises(InvalidValue, match=message):
        Flavour(**{**base, **kwargs})


def test_every_flavour_stays_inside_the_labs_address_plan():
    for f in FLAVOURS.values():  # DESIGN §5: pods on 10.1/16 or 10.244/16 only, never on the underlay
        assert str(f.pod_network) in ("10.1.0.0/16", "10.244.0.0/16") and not f.pod_network.overlaps(UNDERLAY_SPAN)


def test_state_records_the_flavour_and_reads_old_states_as_flannel():
    topo = LabTopology.build(2, seed=1, flavour="k8s")
    state = LabState.from_topology(topo)
    assert state.flavour == "k8s" and state.topology == topo
    assert LabState.model_validate_json(state.model_dump_json()).topology.flavour is K8S
    old = state.model_dump()
    del old["flavour"]  # a state file written before flavours existed
    assert LabState.model_validate(old).topology.flavour is FLANNEL


def test_state_refuses_a_flavour_it_could_not_name_again():
    odd = Flavour("k8s", bridge="br-pods", underlay="ens5", pod_network=K8S.pod_network)
    with pytest.raises(InvalidValue, match="differs from the lab's flavour"):
        LabState.from_topology(LabTopology.build(2, seed=1, flavour=odd))


def test_state_with_an_unknown_flavour_is_unreadable(tmp_path):
    state = LabState.from_topology(LabTopology.build(2, seed=1)).model_dump()
    (tmp_path / "state.json").write_text(LabState.model_construct(**{**state, "flavour": "nope"}).model_dump_json())
    with pytest.raises(UserError, match=r"(?s)unreadable lab state.*flavour 'nope'"):
        LabState.load(tmp_path / "state.json")
