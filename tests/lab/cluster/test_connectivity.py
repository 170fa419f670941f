"""Pod to pod across nodes in every mode: the lab's reason to exist."""

import itertools

import pytest

from netbench.flannel import Mode
from tests.lab.helpers import ping, ttl_of

NODES = ["n1", "n2", "n3"]
# 64, minus one per kernel hop (source node, destination node), minus one per flannel proxy (udp).
EXPECTED_TTL = {Mode.udp: 60, Mode.vxlan: 62, Mode.host_gw: 62, Mode.static: 62}


@pytest.mark.parametrize("mode", list(EXPECTED_TTL), ids=lambda m: m.value)
def test_every_pod_reaches_a_pod_on_every_other_node(in_mode, mode):
    lab = in_mode(mode)
    failed, ttls = [], set()
    for src, dst in itertools.permutations(NODES, 2):
        result = ping(lab, src, lab.pod_ip(dst))
        if result.ok:
            ttls.add(ttl_of(result))
        else:
            failed.append(f"{src} -> {dst}: {result.stdout.strip().splitlines()[-1:]}")
    assert not failed, failed
    assert ttls == {EXPECTED_TTL[mode]}


def test_mode_none_fails_exactly_across_nodes(in_mode):
    lab = in_mode(Mode.none)
    for src, dst in itertools.permutations(NODES, 2):
        assert not ping(lab, src, lab.pod_ip(dst), count=1).ok, f"{src} -> {dst} should be unreachable"
    for node in NODES:  # on one node the bridge still switches between pods: only cross-node is broken
        same = ping(lab, node, lab.pod_ip(node, 2), pod="nb-pod1")
        assert same.ok, same.stdout
        assert ttl_of(same) == 64


def test_pods_on_one_node_talk_in_every_mode(in_mode):
    for mode in (Mode.udp, Mode.vxlan):
        lab = in_mode(mode)
        assert ping(lab, "n2", lab.pod_ip("n2", 2)).ok
