"""The k8s flavour: a lab whose nodes carry kube-flannel's names (bridge cni0, underlay ens4, pods on
10.244.0.0/16), so nothing in netbench may lean on docker0, eth0 or 10.1.0.0/16. One lab for the module,
built as `netbench lab up --flavour k8s` builds it; tests switch its mode as they need."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

import pytest
import yaml

from netbench.flannel import Mode
from netbench.lab.builder import Lab, running_lab
from netbench.lab.faults import Fault
from netbench.lab.topology import K8S, LabTopology
from tests.lab.helpers import ping

POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")


@pytest.fixture(scope="module")
def lab():
    with running_lab(LabTopology.build(3, flavour="k8s")) as lab:
        yield lab


def in_mode(lab: Lab, mode: Mode) -> Lab:
    if lab.mode is not mode:
        lab.set_mode(mode)
    return lab


def netbench(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=timeout)


def links(lab: Lab, node: str) -> dict[str, str]:
    """name -> `ip -br link` line of every interface on a node, read through `netbench lab exec`."""
    proc = netbench("lab", "exec", node, "--", "ip", "-br", "link")
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0].split("@")[0]: line for line in proc.stdout.splitlines()}


def test_the_lab_carries_kube_flannels_names(lab):
    proc = netbench("lab", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["flavour"] == {"name": "k8s", "bridge": "cni0", "underlay": "ens4", "pod_network": "10.244.0.0/16"}
    assert status["mode"] == "vxlan"  # the flavour's default
    for row in status["nodes"]:
        assert row["links"] == {"cni0": True, "ens4": True} and "flannel.1" in row["devices"]
        assert ipaddress.ip_network(row["subnet"]).subnet_of(POD_NETWORK) and row["lease"]["BackendType"] == "vxlan"
    names = links(lab, "n2")
    assert {"cni0", "ens4", "flannel.1"} <= set(names) and not {"docker0", "eth0"} & set(names)
    inventory = yaml.safe_load(lab.inventory_file.read_text())
    assert inventory["cluster"]["pod_network"] == "10.244.0.0/16"
    assert json.loads(lab.state_file.read_text())["flavour"] == "k8s" and lab.topology.flavour is K8S
    assert "flavour k8s: bridge cni0, underlay ens4" in netbench("lab", "status").stdout


@pytest.mark.parametrize("mode", [Mode.vxlan, Mode.udp])
def test_pods_reach_each_other(lab, mode):
    in_mode(lab, mode)
    for dst in ("n2", "n3"):
        assert ipaddress.ip_address(lab.pod_ip(dst)) in POD_NETWORK
        result = ping(lab, "n1", lab.pod_ip(dst))
        assert result.exit_code == 0, f"{mode.value}: n1 -> {dst}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("mode", [Mode.vxlan, Mode.udp])
def test_doctor_finds_the_names_and_the_mode(lab, mode):
    in_mode(lab, mode)
    proc = netbench("doctor", "--json")
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    assert report["mode"] == mode.value
    for name in ("n1", "n2", "n3"):
        node = report["nodes"][name]
        assert (node["bridge"], node["underlay"], node["mode"]) == ("cni0", "ens4", mode.value), node
        assert ipaddress.ip_network(node["pod_subnet"]).subnet_of(POD_NETWORK)
        assert node["pod_subnet"] == lab.node(name).spec.subnet
    assert (proc.returncode, report["healthy"]) == (0, True), json.dumps(report["findings"], indent=1)


def test_trace_is_delivered(lab):
    in_mode(lab, Mode.vxlan)
    proc = netbench("trace", "n1", "n2", "--json", timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trace = json.loads(proc.stdout)["traces"][0]
    ifaces = [h["hop"]["iface"] for h in trace["hops"]]
    assert {"cni0", "flannel.1", "ens4"} <= set(ifaces) and not {"docker0", "eth0"} & set(ifaces), ifaces
    assert all(h["seen"] for h in trace["hops"]) and "delivered" in json.dumps(trace["verdicts"])


def test_faults_act_on_the_flavours_underlay(lab):
    in_mode(lab, Mode.vxlan)
    lab.add_fault(Fault("mtu", "n2", mtu=1400))
    lab.add_fault(Fault("rate", "n3", rate="10mbit"))
    try:
        assert "mtu 1400" in lab.node("n2").run(["ip", "link", "show", "ens4"]).stdout
        assert "tbf" in lab.node("n3").run(["tc", "qdisc", "show", "dev", "ens4"]).stdout
    finally:
        assert lab.clear_faults() == 2
    assert "mtu 1500" in lab.node("n2").run(["ip", "link", "show", "ens4"]).stdout
    assert "tbf" not in lab.node("n3").run(["tc", "qdisc", "show", "dev", "ens4"]).stdout
    assert ping(lab, "n1", lab.pod_ip("n2")).exit_code == 0


def test_trace_names_faults_made_by_hand_with_kube_flannels_names(lab):
    """No check leans on docker0/eth0: an FDB entry deleted on flannel.1 and a forward chain with policy
    drop are named on this lab's cni0/ens4 nodes too."""
    in_mode(lab, Mode.vxlan)
    mac, n2 = lab.state.vtep_macs["n2"], lab.node("n2").spec.address
    lab.node("n1").run(["bridge", "fdb", "del", mac, "dev", "flannel.1", "dst", n2])
    try:
        proc = netbench("trace", "n1", "n2", "--no-mtu", "--json")
    finally:
        lab.node("n1").run(["bridge", "fdb", "append", mac, "dev", "flannel.1", "dst", n2, "self", "permanent"])
    v = next(v for v in json.loads(proc.stdout)["traces"][0]["verdicts"] if not v["ok"])
    assert proc.returncode == 1 and (v["kind"], v["node"], v["hop"]) == ("fdb-missing", "n1", "n1:flannel.1:out"), v
    assert any(mac in e for e in v["evidence"]), v
    lab.node("n2").run(["nft", "add", "table", "inet", "nbtest"])
    lab.node("n2").run(["nft", "add", "chain", "inet", "nbtest", "forward",
                        "{ type filter hook forward priority 0 ; policy drop ; }"])
    try:
        proc = netbench("trace", "n1", "n2", "--no-mtu", "--json")
    finally:
        lab.node("n2").run(["nft", "delete", "table", "inet", "nbtest"])
    v = next(v for v in json.loads(proc.stdout)["traces"][0]["verdicts"] if not v["ok"])
    assert (v["kind"], v["node"], v["hop"]) == ("firewall-drop", "n2", "n2:flannel.1:in"), v
    assert v["hint"] == "nft -a list chain inet nbtest forward", v
    proc = netbench("trace", "n1", "n2", "--no-mtu", "--probes", "5", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:]
