"""Routes that cannot hurt, on the shared lab: a bad flannel lease made with etcdctl is refused before
any node changes, and a foreign OSPF speaker on the underlay segment (a real FRR in a namespace the lab
did not plan, wired by hand with `ip netns`/`ip link`) never gets its default route into a node's kernel."""

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from netbench import flannel, frr
from netbench.flannel import Mode
from netbench.lab.topology import SWITCH_BRIDGE, SWITCH_NS

ROGUE_NS = "nb-rogue"  # nb-: `netbench lab down` sweeps it if this test is killed
ROGUE_IP = "198.18.0.200"  # on segment 0, no lab node's (n1..n3, router .253, mgmt .254)
ROGUE_UNDERLAY = "198.18.77.0/24"  # an underlay-like prefix; its other one is inside the pod network
FRR_BIN = Path("/usr/lib/frr")


def netbench(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=timeout)


def etcdctl(lab, *args: str) -> str:
    node = lab.node("n1")
    return node.run(["etcdctl", f"--endpoints=http://{node.spec.address}:2379", *args]).stdout


def kernel_routes(node) -> list[dict]:
    return json.loads(node.run(["ip", "-j", "route", "show", "table", "all"]).stdout)


def snapshot(lab) -> dict:
    """Everything routes apply may touch, byte for byte: every route of every table, FRR's running config."""
    return {n.name: (n.run(["ip", "-d", "-j", "route", "show", "table", "all"]).stdout,
                     n.run(["vtysh", "-c", "show running-config"]).stdout) for n in lab.nodes}


# -- bad leases ------------------------------------------------------------------------------------

BAD_LEASES = {  # key suffix -> why it is refused
    "0.0.0.0-0": "a default route",
    "198.18.0.0-16": "outside cluster.pod_network",  # covers the whole underlay
    "10.2.0.0-24": "outside cluster.pod_network",
}


def test_bad_leases_are_refused_before_any_route_changes(in_mode):
    lab = in_mode(Mode.udp)  # the lab's udp flannel keeps leases in user space: no kernel route from them
    keys = [flannel.subnet_key(flannel.DEFAULT_PREFIX, suffix.replace("-", "/")) for suffix in BAD_LEASES]
    value = json.dumps({"PublicIP": lab.node("n2").spec.address, "BackendType": "udp"})
    before = snapshot(lab)
    try:
        for key in keys:
            etcdctl(lab, "put", key, value)
        for args in (["static"], ["frr"], ["static", "--dry-run"]):
            result = netbench("routes", "apply", *args)
            assert result.returncode == 2, result.stdout + result.stderr
            for key, reason in zip(keys, BAD_LEASES.values(), strict=True):
                line = next((x for x in result.stderr.splitlines() if key in x), "")
                assert reason in line, result.stderr
            assert "nothing was changed on any node" in result.stderr
            assert snapshot(lab) == before  # not one route, not one FRR line, on any node
            assert lab.node("n1").run(["test", "-e", "/run/netbench/routes.json"], check=False).exit_code == 1
    finally:
        for key in keys:
            etcdctl(lab, "del", key)


# -- a foreign OSPF speaker ------------------------------------------------------------------------

def rogue(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ROGUE_NS, *argv], capture_output=True, text=True, check=check)


def rogue_vtysh(run_dir: str, *commands: str) -> str:
    argv = ["vtysh", "--vty_socket", run_dir]
    for command in commands:
        argv += ["-c", command]
    return rogue(*argv).stdout


@contextmanager
def foreign_speaker(prefixes: tuple[str, ...]):
    """A real FRR (zebra + ospfd) on the underlay segment, made by hand, announcing a default route and
    `prefixes`; OSPF area 0 on 198.18.0.0/24 with the lab's timers but without the cluster's key.
    Yields its run directory (for vtysh --vty_socket); everything is gone afterwards."""
    procs: list[subprocess.Popen] = []
    run_dir = tempfile.mkdtemp(prefix="nb-rogue-frr.")
    subprocess.run(["ip", "netns", "add", ROGUE_NS], check=True)
    try:
        subprocess.run(["ip", "-n", SWITCH_NS, "link", "add", "rogue", "type", "veth", "peer", "name", "eth0",
                        "netns", ROGUE_NS], check=True)
        subprocess.run(["ip", "-n", SWITCH_NS, "link", "set", "rogue", "master", SWITCH_BRIDGE, "up"], check=True)
        rogue("ip", "link", "set", "lo", "up")
        rogue("ip", "addr", "add", f"{ROGUE_IP}/24", "dev", "eth0")
        rogue("ip", "link", "set", "eth0", "up")
        for prefix in prefixes:  # connected routes it redistributes
            rogue("ip", "addr", "add", prefix.replace(".0/", ".1/"), "dev", "lo")
        os.chown(run_dir, *_frr_ids())
        for daemon in ("zebra", "ospfd"):
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ROGUE_NS, str(FRR_BIN / daemon), "-P", "0", "-u", "frr", "-g", "frr",
                 "--vty_socket", run_dir, "-z", f"{run_dir}/zserv.api", "-i", f"{run_dir}/{daemon}.pid",
                 "-f", "/dev/null", "--log", "stdout", "--log-level", "warnings"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait(lambda d=daemon: Path(f"{run_dir}/{d}.vty").exists(), 10, f"rogue {daemon}")
        rogue_vtysh(run_dir, "configure terminal", "interface eth0", f"ip ospf hello-interval {frr.HELLO_S}",
                    f"ip ospf dead-interval {frr.DEAD_S}", "ip ospf priority 0", "exit", "router ospf",
                    f"ospf router-id {ROGUE_IP}", "network 198.18.0.0/24 area 0", "redistribute connected",
                    "default-information originate always", "exit", "end")
        yield run_dir
    finally:
        for proc in procs:  # only the daemons this test started, by their own process
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "del", ROGUE_NS], check=False)  # takes its veth, and the switch end
        subprocess.run(["rm", "-rf", run_dir], check=False)


def _frr_ids() -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam("frr")
    return entry.pw_uid, entry.pw_gid


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready within {timeout:.0f}s")
        time.sleep(0.2)


def _unleased_pod_prefix(lab) -> str:
    """A /24 of the pod network that no node leases: the lab's leases are drawn at random, and a speaker
    announcing a node's own subnet would be indistinguishable from that node."""
    leased = [ipaddress.ip_network(n.spec.subnet) for n in lab.nodes]
    return str(next(s for s in reversed(list(lab.topology.flavour.pod_network.subnets(new_prefix=24)))
                    if not any(s.overlaps(lease) for lease in leased)))


def _foreign_in_kernel(node, prefixes: tuple[str, ...]) -> list[dict]:
    """The node's kernel routes a foreign speaker could have put there: a default, or its `prefixes`."""
    return [r for r in kernel_routes(node) if r["dst"] in ("default", "0.0.0.0/0", *prefixes)]


def _ospf_routes(node) -> dict:
    """The routes ospfd computed (its own table, before zebra's import filter)."""
    return json.loads(node.run(["vtysh", "-c", "show ip ospf route json"]).stdout or "{}")


def _learned_pods(lab, node) -> set[str]:
    return {r["dst"] for r in kernel_routes(node) if r.get("protocol") == "ospf"} & \
        {p.spec.subnet for p in lab.nodes if p.name != node.name}


def _ospf_on(lab):
    if lab.mode is not Mode.frr or lab.state.routing != "ospf":
        lab.set_mode(Mode.frr, routing="ospf")
    return lab


def test_a_foreign_ospf_speaker_never_reaches_a_nodes_kernel(lab):
    _ospf_on(lab)
    nodes = lab.nodes
    pods = {n.name: {p.spec.subnet for p in nodes if p.name != n.name} for n in nodes}
    rogue_pod = _unleased_pod_prefix(lab)
    prefixes = (ROGUE_UNDERLAY, rogue_pod)
    with foreign_speaker(prefixes) as run_dir:
        # 1. it does not hold the cluster's key: no adjacency, nothing of it in any database or kernel
        time.sleep(frr.DEAD_S + 3)  # long enough for an open segment to bring it to Full (wait timer = dead)
        rogue_seen = json.loads(rogue_vtysh(run_dir, "show ip ospf neighbor json"))
        assert not rogue_seen.get("neighbors"), rogue_seen
        for node in nodes:
            assert ROGUE_IP not in frr.neighbours(node, "ospf")
            assert not {"0.0.0.0/0", *prefixes} & set(_ospf_routes(node)), node.name  # never computed
            assert _foreign_in_kernel(node, prefixes) == [], node.name
            assert _learned_pods(lab, node) == pods[node.name]  # the pods' subnets are still learned

        # 2. even a speaker that holds the key (an insider, a copied config) gets only pod-network
        # prefixes into the kernel: the import filter keeps its default and 198.18.77.0/24 in FRR's RIB
        config = nodes[0].run(["vtysh", "-c", "show running-config"]).stdout
        key = next(line.split()[-1] for line in config.splitlines() if "message-digest-key" in line)
        rogue_vtysh(run_dir, "configure terminal", "interface eth0", "ip ospf authentication message-digest",
                    f"ip ospf message-digest-key {frr.AUTH_KEY_ID} md5 {key}", "exit", "end")
        for node in nodes:  # the positive control: it is a neighbour, and its pod-network prefix is in
            _wait(lambda n=node: rogue_pod in {r["dst"] for r in kernel_routes(n)}, 20,
                  f"{node.name} learning {rogue_pod} from the keyed speaker")
            assert {"0.0.0.0/0", ROGUE_UNDERLAY} <= set(_ospf_routes(node))  # ospfd heard and computed them
            leaked = [r for r in _foreign_in_kernel(node, prefixes) if r["dst"] != rogue_pod]
            assert leaked == [], (node.name, leaked)
            assert _learned_pods(lab, node) == pods[node.name]
    # gone with it (dead interval): the shared lab is left as it was
    for node in nodes:
        _wait(lambda n=node: _foreign_in_kernel(n, prefixes) == [], 15, f"{node.name} dropping the speaker's routes")
