import ipaddress
import random

import pytest

from netbench.flannel import Mode
from netbench.lab.topology import POD_NETWORK, UNDERLAY, LabTopology, LinkShape, allocate_subnets


def test_three_node_plan():
    topo = LabTopology.build(3, Mode.vxlan, seed=7)
    assert [n.name for n in topo.nodes] == ["n1", "n2", "n3"]
    assert [n.address for n in topo.nodes] == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert topo.etcd_node.name == "n1" and topo.etcd_endpoint == "http://198.18.0.1:2379"
    subnets = [ipaddress.ip_network(n.subnet) for n in topo.nodes]
    assert len(set(subnets)) == 3
    assert all(s.subnet_of(POD_NETWORK) and s.prefixlen == 24 for s in subnets)
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
