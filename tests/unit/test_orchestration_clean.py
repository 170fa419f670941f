"""`netbench clean` (probes.clean_nodes) and `netbench doctor` (doctor.examine) over scripted nodes: one
result per node, a node that fails never hides what the others did (Fabric's GroupResult)."""

from __future__ import annotations

from netbench import cluster, doctor, probes, runlock
from netbench.errors import CommandError
from netbench.inventory import load_inventory
from tests.fakes import fake_cluster  # noqa: F401 — fake_cluster is a fixture


def leave_probes(lab, name: str) -> None:
    """What a killed run leaves on a node: its probe pods, agents and iperf3 servers."""
    node = lab[name]
    lock = runlock.RunLock.new()
    runlock.acquire(node, lock)
    probes.deploy(node, cluster.of_node(lab.nodes()[list(lab.nodes_by_name).index(name)], node.raw_facts,
                                        lab.pod_network), lock.workdir)
    assert len(node.pods) == 2 and len(node.running) == 6
    node.lock["dead"] = True  # past its expiry, and its watchdog gone too


def test_clean_keeps_the_counts_of_the_nodes_it_reached(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2", "n3"])
    leave_probes(lab, "n1")
    lab["n2"].unreachable()
    result = probes.clean_nodes(lab.targets(), transport=lab.transport)

    assert list(result) == ["n1", "n2", "n3"]
    assert result.succeeded == {"n1": {"pods": 2, "processes": 6}, "n3": {"pods": 0, "processes": 0}}
    assert list(result.failed) == ["n2"]
    error = result.failed["n2"]
    assert isinstance(error, CommandError) and error.result.exit_code == 255
    assert "n2: cannot reach 198.18.0.2:22" in str(error)
    assert (lab["n1"].pods, lab["n1"].running) == ({}, [])
    assert [n.connected for n in lab] == [False, False, False]  # the fleet closed every connection


def test_clean_that_times_out_on_one_node(fake_cluster):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])
    leave_probes(lab, "n2")
    lab["n2"].time_out("clean")
    result = probes.clean_nodes(lab.targets(), transport=lab.transport)

    assert result.succeeded == {"n1": {"pods": 0, "processes": 0}}
    assert str(result.failed["n2"]).endswith("exited 124: timed out after 30s")
    assert len(lab["n2"].pods) == 2  # still there: the next `netbench clean` will find them
    again = probes.clean_nodes(lab.targets(), transport=lab.transport)  # the fake keeps the node's state
    assert again.succeeded["n2"] == {"pods": 2, "processes": 6}


def test_doctor_reports_each_node_and_the_one_it_cannot_reach(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2", "n3"])
    lab["n3"].unreachable()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("cluster:\n  name: fake\n  pod_network: 10.1.0.0/16\nnodes:\n" + "".join(
        f"  - name: {n.name}\n    address: {n.address}\n" for n in lab))
    report = doctor.examine(load_inventory(inventory), lab.nodes(), transport=lab.transport)

    assert report["healthy"] is False and report["mode"] == "vxlan"
    assert "cannot reach 198.18.0.3:22" in report["nodes"]["n3"]["error"]
    n1 = report["nodes"]["n1"]
    assert (n1["pod_subnet"], n1["bridge"], n1["underlay"], n1["problems"]) == ("10.1.61.0/24", "docker0", "eth0", [])
    assert set(n1["peer_routes"]) == {"n2"}
    assert [n.kinds for n in lab] == [["facts"], ["facts"], ["facts"]]
