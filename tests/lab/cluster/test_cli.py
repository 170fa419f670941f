"""The lab commands as a person types them."""

import json
import subprocess
import sys


def netbench(*args):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=60)


def test_status_json_reports_every_node_healthy(lab):
    proc = netbench("lab", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["mode"] == lab.mode.value
    assert [n["name"] for n in status["nodes"]] == ["n1", "n2", "n3"]
    assert all(n["node"] and all(n["daemons"].values()) and n["lease"] for n in status["nodes"])
    assert status["inventory"].endswith("inventory.yaml")


def test_exec_runs_on_the_node_and_in_its_pods(lab):
    assert netbench("lab", "exec", "n2", "--", "hostname").stdout.strip() == "n2"
    out = netbench("lab", "exec", "n3", "--pod", "nb-pod1", "--", "ip", "-br", "addr", "show", "eth0").stdout
    assert lab.node("n3").spec.pod_address(1) in out
    assert netbench("lab", "exec", "n2", "--", "false").returncode == 1


def test_errors_are_one_line_with_exit_2(lab):
    proc = netbench("lab", "exec", "n9", "--", "true")
    assert proc.returncode == 2 and "no node named 'n9'" in proc.stderr and "Traceback" not in proc.stderr
    proc = netbench("lab", "up")
    assert proc.returncode == 2 and "already exists" in proc.stderr
    proc = netbench("lab", "mode", "gre")
    assert proc.returncode == 2 and "udp, vxlan, host-gw, static, frr, none" in proc.stderr


def test_inventory_lists_nodes_and_ssh_material(lab):
    import yaml
    inv = yaml.safe_load(lab.inventory_file.read_text())
    assert [n["address"] for n in inv["nodes"]] == [n.spec.address for n in lab.nodes]
    assert inv["cluster"]["etcd"]["endpoints"] == ["http://198.18.0.1:2379"]
    assert inv["ssh"]["known_hosts"] == str(lab.keys.known_hosts)
