"""The k8s flavour: a lab whose nodes carry kube-flannel's names (bridge cni0, underlay ens4, pods on
10.244.0.0/16), so nothing in netbench may lean on docker0, eth0 or 10.1.0.0/16; and, like a cluster of
kube-flannel's subnet manager, no etcd at all: the leases are in the Node objects and on the nodes, and
netbench reads them from the nodes. One lab for the module, built as `netbench lab up --flavour k8s`
builds it; tests switch its mode as they need."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from netbench import flannel
from netbench.errors import LabError
from netbench.flannel import Mode
from netbench.lab.builder import Lab, running_lab
from netbench.lab.faults import Fault
from netbench.lab.topology import K8S, LabTopology
from netbench.report import compare
from tests.lab.helpers import ping, ttl_of

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
        # no etcd: each node's lease as the node itself holds it (subnet.env, its address, its overlay device)
        lease = node["lease"]
        assert (lease["PublicIP"], lease["source"]) == (lab.node(name).spec.address, f"node {name}"), lease
        assert lease["BackendType"] == mode.value and lease["VtepMAC"] == lab.state.vtep_macs.get(name), lease
    assert report["lease_source"].startswith("nodes (/run/flannel/subnet.env") and report["leases_compared"] == []
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


# -- CNI: the nodes' own network config and host-local store; probe pods made through them -----------

STORE = "/var/lib/cni/networks/cbr0"  # host-local's default dataDir + the conflist's network name
# A kubelet's pods as host-local sees them: ADD (or DEL) with the node's own conflist's IPAM section,
# one container id per pod. Run on the node; prints the addresses it was given, as JSON.
ALLOCATE = r"""
import json, subprocess, sys
command, count = sys.argv[1], int(sys.argv[2])
conf = json.load(open("/etc/cni/net.d/10-flannel.conflist"))
ipam = next(p["ipam"] for p in conf["plugins"] if "ipam" in p)
stdin = json.dumps({"cniVersion": conf["cniVersion"], "name": conf["name"], "ipam": ipam})
got = []
for i in range(count):
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"kubelet-pod-{i}", "CNI_NETNS": f"/run/netns/kube-{i}",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    out = subprocess.run(["/usr/lib/cni/host-local"], input=stdin, env=env, capture_output=True, text=True, check=True)
    if command == "ADD":
        got.append(json.loads(out.stdout)["ips"][0]["address"].split("/")[0])
print(json.dumps(got))
"""


def store(lab: Lab, node: str) -> dict[str, str]:
    """address -> container id, as host-local recorded them in the node's own store (read on the node)."""
    out = lab.node(node).run(["sh", "-c", 'cd "$1" && for f in [0-9]*; do [ -f "$f" ] && printf "%s %s\\n" "$f" '
                              '"$(head -n 1 "$f" | tr -d "\\r")"; done; true', "store", STORE]).stdout
    return dict(line.split() for line in out.splitlines())


def probe_leftovers(lab: Lab) -> dict[str, list[str]]:
    """Per node: probe pods, their CNI records and their addresses in the store, wherever any is left."""
    left = {}
    for node in lab.nodes:
        found = [n for n in node.run(["ip", "netns", "list"]).stdout.split() if n.startswith("nb-probe")]
        found += node.run(["sh", "-c", "ls /run/netbench-cni 2>/dev/null | grep '^nb-probe' || true"]).stdout.split()
        found += [ip for ip, cid in store(lab, node.name).items() if cid.startswith("netbench-")]
        if found:
            left[node.name] = found
    return left


def test_each_node_has_its_own_cni_network_and_store(lab):
    for name in ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap", "/usr/lib/cni/loopback"):
        assert os.access(name, os.X_OK), f"{name}: Debian's containernetworking-plugins is not installed"
    for node in lab.nodes:
        conf = json.loads(node.run(["cat", "/etc/cni/net.d/10-flannel.conflist"]).stdout)
        bridge, portmap = conf["plugins"]
        assert (conf["name"], bridge["type"], bridge["bridge"]) == ("cbr0", "bridge", "cni0")
        assert portmap["type"] == "portmap"
        assert bridge["ipam"]["ranges"] == [[{"subnet": node.spec.subnet, "gateway": node.spec.bridge_address[:-3]}]]
        # the lab's pod came from this node's host-local, and only it is in this node's store
        assert store(lab, node.name) == {lab.pod_ip(node.name): "lab-nb-pod1"}


def test_probe_pods_take_their_addresses_from_host_local_and_never_collide(lab, tmp_path):
    """The issue's case: host-local hands out round-robin over the whole lease, so a node that has run
    pods a while gives the top of the range next — where netbench used to put its probe pods. During a
    run, 50 more pods' addresses from the same IPAM never meet a probe's; after it, the probes' are free."""
    in_mode(lab, Mode.vxlan)
    n1 = lab.node("n1")
    net = ipaddress.ip_network(n1.spec.subnet)
    n1.run(["sh", "-c", 'printf %s "$2" > "$1/last_reserved_ip.0"', "seed", STORE, str(net.network_address + 240)])
    run = subprocess.Popen([sys.executable, "-m", "netbench", "run", "--tests", "udp_rr", "--scenarios",
                            "pod-pod,pod-pod-same-node",  # two probe pods: a run makes only those its plan needs
                            "--samples", "80", "--interval", "0.01", "--out", str(tmp_path), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(held := {ip: c for ip, c in store(lab, "n1").items() if c.startswith("netbench-")}) < 2:
            assert run.poll() is None and time.monotonic() < deadline, "no probe address ever reached the store"
            time.sleep(0.05)
        for ip, container in held.items():  # the addresses the probe pods really have
            pod = container.removeprefix("netbench-")
            assert f" {ip}/{net.prefixlen}" in n1.run(["ip", "-n", pod, "-br", "addr", "show", "eth0"]).stdout
        others = json.loads(n1.run(["python3", "-c", ALLOCATE, "ADD", "50"]).stdout)
        during = run.poll() is None
    finally:
        out, err = run.communicate(timeout=120)
    try:
        assert run.returncode == 0, err[-2000:]
        assert during, "the run ended before the 50 pods were allocated: make it longer"
        assert len(set(others)) == 50 and not set(others) & set(held), (sorted(held), others)
        assert all(ipaddress.ip_address(ip) in net for ip in [*held, *others])
        after = store(lab, "n1")
        assert set(others) <= set(after) and not set(held) & set(after), after  # the probes' went back to the IPAM
        assert probe_leftovers(lab) == {}
        assert json.loads(out)["failures"] == []
    finally:
        n1.run(["python3", "-c", ALLOCATE, "DEL", "50"])
        n1.run(["rm", "-f", f"{STORE}/last_reserved_ip.0"])


def test_clean_gives_back_what_a_killed_run_left_even_a_pod_deleted_by_hand(lab):
    """Two probe pods made as a run makes them, then the run is gone; a person deletes one namespace by
    hand. `netbench clean` runs the chain's DEL for both: the store holds neither address afterwards."""
    n2 = lab.node("n2")
    for pod in ("nb-probe-1", "nb-probe-2"):
        n2.run(["python3", str(lab.probes_dir / "cni.py"), "add", "--conf", "/etc/cni/net.d/10-flannel.conflist",
                "--pod", pod, "--container-id", f"netbench-{pod}"])
    n2.run(["ip", "netns", "del", "nb-probe-2"])
    assert sorted(c for c in store(lab, "n2").values() if c.startswith("netbench-")) == [
        "netbench-nb-probe-1", "netbench-nb-probe-2"]
    proc = netbench("clean")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert probe_leftovers(lab) == {}
    assert store(lab, "n2") == {lab.pod_ip("n2"): "lab-nb-pod1"}
    assert len([name for name in links(lab, "n2") if name.startswith("veth")]) == 1  # nb-pod1's host end only


# -- no etcd: the leases are the Node objects' and the nodes' own ---------------------------------------


def test_no_etcd_anywhere_the_leases_are_in_the_node_objects(lab):
    inventory = yaml.safe_load(lab.inventory_file.read_text())
    assert "etcd" not in inventory["cluster"] and all("etcd" not in n["roles"] for n in inventory["nodes"])
    assert all("etcd" not in lab.state.node(n.name).daemons for n in lab.nodes)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "etcd"], "an etcd runs"
    with pytest.raises(LabError, match="runs no etcd"):
        lab.etcd  # noqa: B018
    objects = json.loads((lab.kube_dir / "nodes.json").read_text())["items"]
    for node, obj in zip(lab.nodes, objects, strict=True):  # as kube-flannel annotates its Node
        notes = obj["metadata"]["annotations"]
        assert (obj["metadata"]["name"], obj["spec"]["podCIDR"]) == (node.name, node.spec.subnet)
        assert notes[flannel.PUBLIC_IP] == node.spec.address and notes[flannel.BACKEND_TYPE] == lab.mode.value


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def copy_inventory(lab: Lab, tmp_path, leases: dict, edit=None) -> str:
    """The lab's inventory with cluster.leases set, next to a copy of the Node objects (edited first):
    a person's `kubectl get nodes -o json > nodes.json`."""
    doc = json.loads((lab.kube_dir / "nodes.json").read_text())
    for obj in doc["items"]:
        if edit:
            edit(obj["metadata"]["name"], obj["metadata"]["annotations"])
    (tmp_path / "nodes.json").write_text(json.dumps(doc))
    inventory = yaml.safe_load(lab.inventory_file.read_text())
    inventory["cluster"]["leases"] = leases
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    return str(tmp_path / "inventory.yaml")


def test_node_objects_that_disagree_with_the_nodes_are_a_finding_and_a_bad_one_an_error(lab, tmp_path):
    in_mode(lab, Mode.vxlan)
    n2, n3 = lab.node("n2").spec.address, lab.node("n3").spec.address

    def moved(name, notes):  # the Node object names n3's address for n2's subnet
        if name == "n2":
            notes[flannel.PUBLIC_IP] = n3
    proc = netbench("doctor", "--json", "-i", copy_inventory(lab, tmp_path, {"kube_nodes": "nodes.json"}, moved))
    report = json.loads(proc.stdout)
    assert report["lease_source"].startswith("nodes") and report["leases_compared"] == [
        f"kubernetes {tmp_path}/nodes.json"]
    found = [f for f in report["findings"] if f["cause"] == "lease-sources-disagree"]
    assert proc.returncode == 1 and {f["node"] for f in found} == {"n2", "n3"}, report["findings"]
    assert f"PublicIP {n2} in node n2, {n3} in kubernetes" in found[0]["message"], found[0]
    assert any(f"PublicIP {n2}" in e and "(node n2" in e for e in found[0]["evidence"])
    assert any(f"PublicIP {n3}" in e and "(kubernetes" in e for e in found[0]["evidence"])

    def broken(name, notes):
        if name == "n3":
            notes[flannel.BACKEND_DATA] = '{"VNI": 1, "VtepMAC": '
    inventory = copy_inventory(lab, tmp_path, {"source": "kubernetes", "kube_nodes": "nodes.json"}, broken)
    proc = netbench("routes", "apply", "static", "--dry-run", "-i", inventory)
    assert proc.returncode == 2 and "node n3: annotation flannel.alpha.coreos.com/backend-data is not JSON" in \
        proc.stderr + proc.stdout, proc.stdout + proc.stderr


def snapshot(lab: Lab) -> dict:
    """Everything routes apply may touch: every route of every table, and FRR's running config."""
    return {n.name: (n.run(["ip", "-d", "-j", "route", "show", "table", "all"]).stdout,
                     n.run(["vtysh", "-c", "show running-config"]).stdout) for n in lab.nodes}


def routes_of(lab: Lab, node: str, proto: str) -> dict[str, dict]:
    return {r["dst"]: r for r in json.loads(lab.node(node).run(["ip", "-j", "route", "show"]).stdout)
            if r.get("protocol") == proto}


def test_routes_static_from_the_nodes_leases_a_run_over_them_then_revert(lab, tmp_path):
    """The issue's case: no etcd, `routes apply static` routes from the nodes' own leases; a short run
    measures the routed path (its trace: no overlay, the pod's TTL as two kernels routed it); revert
    puts every table back byte for byte."""
    in_mode(lab, Mode.vxlan)
    before = snapshot(lab)
    short = ["--tests", "udp_rr", "--scenarios", "pod-pod", "--pairs", "n1:n2", "--samples", "20", "--interval",
             "0.005", "--json"]
    overlay = netbench("run", *short, "--out", str(tmp_path / "vxlan"), timeout=180)  # the overlay as it runs
    assert overlay.returncode == 0, overlay.stderr[-2000:]
    applied = netbench("routes", "apply", "static")
    assert applied.returncode == 0 and "leases from nodes" in applied.stdout, applied.stdout + applied.stderr
    try:
        for node in lab.nodes:
            peers = {p.spec.subnet: p.spec.address for p in lab.nodes if p.name != node.name}
            assert {d: r["gateway"] for d, r in routes_of(lab, node.name, "static").items()} == peers
        run = netbench("run", *short, "--trace", "--out", str(tmp_path / "static"), timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        out = json.loads(run.stdout)
        assert out["mode"] == "static" and out["failures"] == []
        rtt = [r for r in out["summary"] if r.get("test") == "udp_rr"]
        assert len(rtt) == 1 and 0 < rtt[0]["rtt_p50_us"] < 50_000, rtt  # the figure of the routed path
        print(f"static routes from the nodes' leases: udp_rr RTT p50 {rtt[0]['rtt_p50_us']:.0f} µs")
        trace = json.loads((Path(out["run_dir"]) / "traces.json").read_text())[0]
        assert trace["lease_source"].startswith("nodes") and trace["mode"] == "static"
        hops = {h["hop"]["label"]: h for h in trace["hops"] if h["seen"]}
        assert not [h for h in hops if "flannel.1" in h], hops  # the overlay is not on the path
        assert hops["n1:ens4:out"]["ttl"] == 63 and not hops["n1:ens4:out"]["encap"], hops["n1:ens4:out"]
        assert ttl_of(ping(lab, "n1", lab.pod_ip("n2"))) == 62
        # the two runs side by side, path against path: what the routes changed
        _, side = compare.compare([Path(json.loads(overlay.stdout)["run_dir"]), Path(out["run_dir"])])
        p50 = side[side.metric == "rtt_p50_us"].iloc[0]
        assert p50["mode"] == "vxlan → static" and p50[f"{Path(out['run_dir']).name} ratio"] > 0, p50
    finally:
        reverted = netbench("routes", "revert")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert snapshot(lab) == before  # flannel's vxlan routes (proto boot, onlink) are back, exactly
    assert ping(lab, "n1", lab.pod_ip("n2")).exit_code == 0


def test_routes_frr_learns_exactly_the_peers_pod_subnets(lab):
    in_mode(lab, Mode.vxlan)
    before = snapshot(lab)
    applied = netbench("routes", "apply", "frr")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    try:
        for node in lab.nodes:
            peers = {p.spec.subnet: p.spec.address for p in lab.nodes if p.name != node.name}
            assert {d: r["gateway"] for d, r in routes_of(lab, node.name, "ospf").items()} == peers
    finally:
        reverted = netbench("routes", "revert")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert snapshot(lab) == before
