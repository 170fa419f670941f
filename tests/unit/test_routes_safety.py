"""Which leases `routes apply` refuses, before it changes anything: the pure check over (leases,
inventory, node facts), and apply refusing before it opens a single SSH connection."""

import copy
import importlib
import json
from pathlib import Path

import pytest

from netbench import facts, routes
from netbench.routes.safety import UnsafeLeases, overlapping, refuse_unsafe, unsafe_leases

apply_module = importlib.import_module("netbench.routes.apply")  # the module; `routes.apply` is its function

DATA = Path(__file__).parent / "data"
PREFIX = "/coreos.com/network/subnets/"
POD_NETWORK = "10.1.0.0/16"
ADDRESSES = ["198.18.0.1", "198.18.0.2", "198.18.0.3"]


def leases(**values: str) -> dict:
    """key suffix (10.1.5.0-24) -> PublicIP, as lease_table returns them: each with its etcd key."""
    parsed = routes.parse_leases({suffix.replace("-", "/"): {"PublicIP": ip} for suffix, ip in values.items()})
    return {subnet: routes.Lease(lease.subnet, lease.public_ip, key=PREFIX + subnet.replace("/", "-"))
            for subnet, lease in parsed.items()}


def lab_facts(change=None) -> dict:
    """The lab's n1..n3 in udp mode, as the facts probe gathered them (optionally edited first)."""
    data = json.loads((DATA / "facts-udp.json").read_text())
    out = {}
    for name, raw in data["raw"].items():
        raw = copy.deepcopy(raw)
        if change:
            change(name, raw)
        out[name] = facts.analyse(name, data["addresses"][name], raw, POD_NETWORK)
    return out


def lab_leases(**extra: str) -> dict:
    subnets = json.loads((DATA / "facts-udp.json").read_text())["subnets"]
    own = {subnets[n].replace("/", "-"): ip for n, ip in zip(("n1", "n2", "n3"), ADDRESSES, strict=True)}
    return leases(**own, **extra)


def reasons(table, **kwargs) -> dict[str, str]:
    return {p.lease.key.removeprefix(PREFIX): p.reason for p in unsafe_leases(table, POD_NETWORK, ADDRESSES,
                                                                              **kwargs)}


def test_the_labs_own_leases_are_safe():
    assert unsafe_leases(lab_leases(), POD_NETWORK, ADDRESSES, lab_facts()) == []


@pytest.mark.parametrize("suffix, reason", [
    ("0.0.0.0-0", "a default route (0.0.0.0/0)"),
    ("198.18.0.0-16", "outside cluster.pod_network 10.1.0.0/16"),  # covers the underlay
    ("10.2.0.0-24", "outside cluster.pod_network 10.1.0.0/16"),
])
def test_a_lease_outside_the_pod_network_is_refused_by_its_etcd_key(suffix, reason):
    found = unsafe_leases(lab_leases(**{suffix: "198.18.0.2"}), POD_NETWORK, ADDRESSES, lab_facts())
    assert [p.lease.key for p in found] == [PREFIX + suffix]
    assert reason in found[0].reason and found[0].message.startswith(f"lease {PREFIX}{suffix} (")


def test_a_lease_covering_a_nodes_address_is_refused_when_the_pod_network_holds_the_underlay():
    # a pod network that (wrongly) contains the nodes' own addresses: 10.0.0.0/8 with nodes at 10.250.0.x
    table = leases(**{"10.250.0.0-16": "10.250.0.2", "10.1.5.0-24": "10.250.0.1"})
    found = unsafe_leases(table, "10.0.0.0/8", ["10.250.0.1", "10.250.0.2"])
    assert [p.lease.subnet for p in found] == ["10.250.0.0/16"]
    assert "covers the underlay: node address 10.250.0.1, node address 10.250.0.2 lie inside it" in found[0].reason


def test_a_lease_overlapping_a_connected_route_is_refused_naming_node_and_route():
    def second_nic(name, raw):  # n2 has 10.1.200.0/24 connected on eth1 (a storage network, say)
        if name == "n2":
            raw["routes"].append({"dst": "10.1.200.0/24", "dev": "eth1", "protocol": "kernel", "scope": "link"})
    got = reasons(lab_leases(**{"10.1.200.0-24": "198.18.0.3"}), node_facts=lab_facts(second_nic))
    assert got == {"10.1.200.0-24": "overlaps n2's connected route `10.1.200.0/24 dev eth1 proto kernel`: "
                                    "routing it would override the node's own network"}


def test_a_node_may_route_its_own_pod_bridge_but_no_other_lease_may_claim_it():
    table = lab_leases()
    n1_subnet = next(s for s, lease in table.items() if lease.public_ip == "198.18.0.1")
    assert reasons(table, node_facts=lab_facts()) == {}
    stolen = {**{s: lease for s, lease in table.items() if s != n1_subnet},
              n1_subnet: routes.Lease(n1_subnet, "198.18.0.2", key=PREFIX + n1_subnet.replace("/", "-"))}
    got = reasons(stolen, node_facts=lab_facts())
    assert "overlaps n1's connected route" in got[n1_subnet.replace("/", "-")]


def test_overlapping_leases_are_both_refused_each_naming_the_other():
    got = reasons(lab_leases(**{"10.1.0.0-20": "198.18.0.2"}) | leases(**{"10.1.5.0-24": "198.18.0.3"}))
    assert "overlaps lease /coreos.com/network/subnets/10.1.5.0-24 (10.1.5.0/24)" in got["10.1.0.0-20"]
    assert "overlaps lease /coreos.com/network/subnets/10.1.0.0-20" in got["10.1.5.0-24"]
    pairs = overlapping(leases(**{"10.1.0.0-20": "198.18.0.2", "10.1.5.0-24": "198.18.0.3"}).values())
    assert [(a.subnet, b.subnet) for a, b in pairs] == [("10.1.0.0/20", "10.1.5.0/24")]


def test_a_lease_of_no_inventory_node_is_refused():
    got = reasons(lab_leases(**{"10.1.9.0-24": "198.18.0.99"}), node_facts=lab_facts())
    assert got == {"10.1.9.0-24": "PublicIP is no inventory node's address (nodes: n1 198.18.0.1, "
                                  "n2 198.18.0.2, n3 198.18.0.3): a stale or foreign lease"}
    # named by hostname and not reached yet: the PublicIP waits for the facts, the rest is checked now
    assert unsafe_leases(lab_leases(**{"10.1.9.0-24": "198.18.0.99"}), POD_NETWORK, ["n1.lan"]) == []


def test_refusal_is_one_user_error_listing_every_lease():
    found = unsafe_leases(leases(**{"0.0.0.0-0": "198.18.0.1", "10.9.0.0-24": "198.18.0.1"}), POD_NETWORK,
                          ADDRESSES)
    with pytest.raises(UnsafeLeases) as caught:
        refuse_unsafe(found)
    text = str(caught.value)
    assert f"{PREFIX}0.0.0.0-0" in text and f"{PREFIX}10.9.0.0-24" in text
    assert "nothing was changed on any node" in text and caught.value.exit_code == 2
    refuse_unsafe([])  # nothing unsafe: no error


@pytest.mark.parametrize("kind", ["static", "frr"])
def test_apply_refuses_a_default_lease_before_it_connects_to_any_node(monkeypatch, kind):
    from netbench.inventory import Inventory
    inv = Inventory.model_validate({
        "cluster": {"name": "lab", "pod_network": POD_NETWORK, "etcd": {"endpoints": ["http://198.18.0.1:2379"]}},
        "nodes": [{"name": f"n{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)]})
    monkeypatch.setattr(apply_module, "stored_source", lambda _inv: lab_leases(**{"0.0.0.0-0": "198.18.0.1"}))

    def no_ssh(*_args, **_kwargs):
        raise AssertionError("apply opened SSH connections before refusing the lease")
    monkeypatch.setattr(apply_module, "Fleet", no_ssh)
    with pytest.raises(UnsafeLeases, match=f"lease {PREFIX}0.0.0.0-0 .*a default route"):
        routes.apply(inv, [], kind, dry_run=True)


def test_apply_refuses_a_lease_over_a_nodes_connected_route_before_any_step_runs(monkeypatch):
    from netbench.inventory import Inventory
    inv = Inventory.model_validate({
        "cluster": {"name": "lab", "pod_network": POD_NETWORK, "etcd": {"endpoints": ["http://198.18.0.1:2379"]}},
        "nodes": [{"name": f"n{i}", "address": a} for i, a in enumerate(ADDRESSES, 1)]})
    monkeypatch.setattr(apply_module, "stored_source", lambda _inv: lab_leases(**{"10.1.200.0-24": "198.18.0.3"}))

    def second_nic(name, raw):
        if name == "n2":
            raw["routes"].append({"dst": "10.1.200.0/24", "dev": "eth1", "protocol": "kernel", "scope": "link"})

    class NoFleet:  # facts come from the stored lab facts; no step may run on any node
        def __init__(self, *_args):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *_exc):
            return None
    monkeypatch.setattr(apply_module, "Fleet", NoFleet)
    monkeypatch.setattr(apply_module.cluster, "gather_facts", lambda *_a, **_k: (lab_facts(second_nic), {}))
    monkeypatch.setattr(apply_module, "_each", lambda *_a, **_k: pytest.fail("a step ran despite the bad lease"))
    with pytest.raises(UnsafeLeases, match=r"10\.1\.200\.0-24 .*overlaps n2's connected route"):
        routes.apply(inv, [], "static")
