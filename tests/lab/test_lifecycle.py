"""Labs of their own: teardown after SIGKILL, idempotent down, link shaping. (The shared lab of
tests/lab/cluster is down by the time these run.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netbench.flannel import Mode
from netbench.lab import cleanup, linkem
from netbench.lab.builder import Lab
from netbench.lab.daemons import FrrDaemons
from netbench.lab.topology import LabTopology, LinkShape, default_state_dir
from tests.lab.helpers import ping


def netbench(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True,
                          timeout=timeout)


def root_snapshot():
    """The root namespace's links, addresses and routes, without counters that move by themselves."""
    def ip(*args):
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout)
    links = sorted((lk["ifname"], lk.get("mtu"), lk.get("address"), lk.get("operstate")) for lk in ip("link"))
    addrs = sorted((a["ifname"], i["local"], i["prefixlen"]) for a in ip("addr") for i in a.get("addr_info", []))
    routes = sorted(json.dumps(r, sort_keys=True) for r in ip("route", "show", "table", "all"))
    return links, addrs, routes


def leftovers():
    state_dir = default_state_dir()
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in cmdline or "nb-node:" in cmdline:
            procs.append((pid, cmdline.replace("\0", " ")[:120]))
    return {"netns": cleanup.lab_namespaces(), "links": cleanup.root_links(), "procs": procs,
            "state_dir": state_dir.exists()}


NOTHING = {"netns": [], "links": [], "procs": [], "state_dir": False}


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def _running(fragment):
    def check():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if fragment in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return True
            except OSError:
                pass
        return False
    return check


@pytest.mark.parametrize("moment, reached", [
    ("switch built", lambda: "nb-sw" in cleanup.lab_namespaces()),
    ("node holders running", lambda: "nb-n3" in cleanup.lab_namespaces()),
    ("daemons starting", _running("--data-dir")),
    ("udp daemons starting", _running("flannel_udp.py")),
])
def test_kill_9_during_up_then_down_leaves_nothing(moment, reached):
    before = root_snapshot()
    builder = subprocess.Popen([sys.executable, "-m", "netbench", "lab", "up", "--mode", "udp"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(reached)
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait()
    assert leftovers() != NOTHING, f"killed at '{moment}' but nothing was built yet"
    down = netbench("lab", "down")
    assert down.returncode == 0, down.stderr
    assert leftovers() == NOTHING
    assert root_snapshot() == before


def test_the_k8s_flavours_mount_points_are_gone_from_the_host_after_down(tmp_path):
    host = [Path("/etc/cni"), Path("/var/lib/cni")]
    before = {p: p.exists() for p in host}
    up = netbench("lab", "up", "--nodes", "2", "--flavour", "k8s")
    assert up.returncode == 0, up.stderr
    assert all(p.is_dir() for p in host)  # each node mounts its own copy over them
    assert netbench("lab", "down").returncode == 0
    assert {p: p.exists() for p in host} == before


def test_down_is_idempotent_and_up_down_restores_the_root_namespace():
    before = root_snapshot()
    up = netbench("lab", "up", "--nodes", "2", "--mode", "vxlan")
    assert up.returncode == 0, up.stderr
    during = root_snapshot()
    assert [lk for lk in during[0] if lk[0] == "nb-mgmt"], "the management veth is the root's one lab link"
    assert len(during[0]) == len(before[0]) + 1
    assert netbench("lab", "down").returncode == 0
    again = netbench("lab", "down")
    assert again.returncode == 0 and "nothing to remove" in again.stdout
    assert leftovers() == NOTHING
    assert root_snapshot() == before


def iperf_gbps(lab, src, dst, seconds=2):
    dst_node = lab.node(dst)
    dst_node.run(["ip", "netns", "exec", "nb-pod1", "iperf3", "-s", "-1", "-D"])
    time.sleep(0.2)
    out = lab.node(src).run(["ip", "netns", "exec", "nb-pod1", "iperf3", "-c", lab.pod_ip(dst), "-t",
                             str(seconds), "--json"], timeout=seconds + 20).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def test_link_rate_caps_pod_throughput():
    lab = Lab()
    lab.up(LabTopology.build(2, Mode.host_gw, LinkShape(rate="200mbit")))
    try:
        gbps = iperf_gbps(lab, "n1", "n2")
        assert 0.1 < gbps < 0.23, f"{gbps:.3f} Gbit/s through a 200mbit tbf"
    finally:
        lab.down()


def test_link_loss_drops_packets():
    lab = Lab()
    lab.up(LabTopology.build(2, Mode.host_gw, LinkShape(loss=25.0)))
    try:
        result = ping(lab, "n1", lab.pod_ip("n2"), count=100)
        line = next(line for line in result.stdout.splitlines() if "packet loss" in line)
        lost = float(line.split("%")[0].split()[-1])
        # 25% on each node's egress: a round trip survives with p = 0.75^2, so ~44% loss expected
        assert 20 < lost < 70, line
        rules = lab.node("n1").run(["nft", "list", "table", "inet", "nb_linkem"]).stdout
        assert "numgen random mod 10000 < 2500" in rules and "packets 0 " not in rules
        # the management path (how lab up wrote etcd) is spared: 100 pings from the root namespace all return
        mgmt = subprocess.run(["ping", "-q", "-c", "100", "-i", "0.002", "-W", "1", lab.node("n1").spec.address],
                              capture_output=True, text=True)
        assert " 0% packet loss" in mgmt.stdout, mgmt.stdout
        lab.clear_faults()  # re-applies the link shape: the loss rule is replaced, not added twice
        rules = lab.node("n1").run(["nft", "list", "table", "inet", "nb_linkem"]).stdout
        assert rules.count("numgen random") == 1, rules
    finally:
        lab.down()


def test_delay_is_refused_clearly_where_netem_is_missing():
    if linkem.netem_available():
        pytest.skip("this kernel has netem: delay is emulated, not refused")
    proc = netbench("lab", "up", "--link-delay", "2ms")
    assert proc.returncode == 2
    assert "netem" in proc.stderr and "Traceback" not in proc.stderr
    assert leftovers() == NOTHING


def test_corrupt_state_is_reported_and_down_still_cleans_up():
    assert netbench("lab", "up", "--nodes", "2").returncode == 0
    state = default_state_dir() / "state.json"
    state.write_text("{ not json")
    status = netbench("lab", "status")
    assert status.returncode == 2 and str(state) in status.stderr and "lab down" in status.stderr
    assert netbench("lab", "up").returncode == 2  # refuses to build over the remains
    assert netbench("lab", "down").returncode == 0
    assert leftovers() == NOTHING


def test_status_notices_a_dead_daemon():
    lab = Lab()
    lab.up(LabTopology.build(2, Mode.udp))
    try:
        assert netbench("lab", "status").returncode == 0
        os.kill(lab.state.node("n2").daemons["flannel-udp"], signal.SIGKILL)
        time.sleep(0.2)
        proc = netbench("lab", "status", "--json")
        assert proc.returncode == 1
        n2 = next(n for n in json.loads(proc.stdout)["nodes"] if n["name"] == "n2")
        frr = dict.fromkeys(FrrDaemons.names, True) if FrrDaemons.available() else {}  # idle, and alive
        assert n2["daemons"] == {"sshd": True, "flannel-udp": False, **frr}
    finally:
        lab.down()


def test_stale_state_after_the_namespaces_vanished_is_refused_not_acted_on():
    assert netbench("lab", "up", "--nodes", "2").returncode == 0
    # what a reboot does: /run (namespaces, processes) gone, /var/lib (the state file) kept
    cleanup.clean(None)
    assert (default_state_dir() / "state.json").exists()
    for args in (("lab", "status"), ("lab", "mode", "vxlan"), ("lab", "exec", "n1", "--", "true")):
        proc = netbench(*args)
        assert proc.returncode == 2 and "not running any more" in proc.stderr, (args, proc.stderr)
    assert cleanup.lab_namespaces() == []  # nothing was re-created by looking
    assert netbench("lab", "down").returncode == 0
    assert leftovers() == NOTHING


def test_a_foreign_state_dir_is_neither_used_nor_deleted():
    foreign = Path("/var/lib/netbench-test-foreign")
    foreign.mkdir(exist_ok=True)
    (foreign / "precious.txt").write_text("keep me")
    env = {**os.environ, "NETBENCH_LAB_DIR": str(foreign)}
    try:
        up = subprocess.run([sys.executable, "-m", "netbench", "lab", "up"], capture_output=True, text=True, env=env)
        assert up.returncode == 2 and "not a netbench lab directory" in up.stderr
        down = subprocess.run([sys.executable, "-m", "netbench", "lab", "down"], capture_output=True, text=True,
                              env=env)
        assert down.returncode == 0
        assert (foreign / "precious.txt").read_text() == "keep me"
        tmp = subprocess.run([sys.executable, "-m", "netbench", "lab", "up"], capture_output=True, text=True,
                             env={**os.environ, "NETBENCH_LAB_DIR": "/tmp/nb-lab"})
        assert tmp.returncode == 2 and "cannot live under /tmp" in tmp.stderr
        assert leftovers() == NOTHING
    finally:
        (foreign / "precious.txt").unlink()
        foreign.rmdir()
