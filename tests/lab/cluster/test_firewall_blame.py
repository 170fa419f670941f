"""A firewall drop made by hand on n2 (plain `nft` / `iptables` through `lab exec`, not `lab fault`) is named
with its table, chain and counter from n2's own snapshots around 20 pings pod n1 → pod n2."""

import subprocess
import sys

from netbench import firewall
from netbench.firewall import Packet
from tests.lab.helpers import ping


def lab_exec(node: str, *argv: str, pod: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "netbench", "lab", "exec", node, *(["--pod", pod] if pod else []), "--", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert not check or proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc


def pings_blamed(lab):
    """20 pings pod n1 → pod n2 between two snapshots of n2's firewall, and what blame makes of them."""
    n2 = lab.node("n2")
    before = firewall.snapshot(n2)
    out = lab_exec("n1", "ping", "-n", "-c", "20", "-i", "0.01", "-W", "1", lab.pod_ip("n2"), pod="nb-pod1",
                   check=False)
    after = firewall.snapshot(n2)
    assert " 100% packet loss" in out.stdout, out.stdout
    assert not after.errors, after.errors
    packet = Packet(lab.pod_ip("n1"), lab.pod_ip("n2"), "icmp", iif=lab.mode.device or "eth0", oif="docker0")
    return packet, firewall.blame(before, after, 20, packet, "forward", "n2")


def tables(lab) -> str:
    return lab.node("n2").run(["nft", "list", "tables"]).stdout


def test_an_nft_forward_chain_with_policy_drop_is_named(lab):
    found = tables(lab)
    try:
        lab_exec("n2", "nft", "add", "table", "inet", "x")
        lab_exec("n2", "nft", "add", "chain", "inet", "x", "forward",
                 "{ type filter hook forward priority 0; policy drop; }")
        packet, f = pings_blamed(lab)
    finally:
        lab_exec("n2", "nft", "delete", "table", "inet", "x", check=False)
    assert f is not None
    assert (f.cause, f.node, f.hop) == ("firewall-drop", "n2", packet.iif)
    assert (f.extra["table"], f.extra["chain"], f.extra["rule"]) == ("x", "forward", None)
    assert f.evidence[0] == f"inet x forward: policy drop (no rule accepts icmp {packet.src}→{packet.dst})"
    assert f.hint == "nft -a list chain inet x forward"
    assert tables(lab) == found and ping(lab, "n1", lab.pod_ip("n2")).ok  # the lab as it was


def test_an_iptables_drop_rule_for_the_pod_subnet_is_named_with_its_counter(lab):
    subnet = lab.node("n2").spec.subnet
    found = tables(lab)
    rule = ["FORWARD", "-d", subnet, "-j", "DROP"]
    try:
        lab_exec("n2", "iptables", "-A", *rule)
        packet, f = pings_blamed(lab)
    finally:
        lab_exec("n2", "iptables", "-D", *rule, check=False)
        if "table ip filter" not in found:  # iptables-nft made the table and its chains: not ours to keep
            lab_exec("n2", "nft", "delete", "table", "ip", "filter", check=False)
    assert f is not None
    assert (f.cause, f.node, f.extra["table"], f.extra["chain"]) == ("firewall-drop", "n2", "filter", "FORWARD")
    assert f.evidence[0] == f"ip filter FORWARD -d {subnet} -j DROP: 0 → 20 packets"
    assert f.hint.startswith("iptables") and f.hint.endswith("-t filter -L FORWARD -v -n --line-numbers")
    assert tables(lab) == found and ping(lab, "n1", lab.pod_ip("n2")).ok
