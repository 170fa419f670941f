"""netbench trace on the lab: the observed path equals the mode's, and each fault gets its verdict."""

import json
import subprocess
import sys

import pytest

from netbench.flannel import Mode
from netbench.lab.faults import Fault


def trace(*args):
    proc = subprocess.run([sys.executable, "-m", "netbench", "trace", *args, "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode in (0, 1) and proc.stdout.strip(), (proc.returncode, proc.stderr[-2000:])
    return proc.returncode, json.loads(proc.stdout)


EXPECTED = {
    Mode.udp: ["n1:{veth}:in", "n1:docker0:in", "n1:flannel0:out", "n1:eth0:out", "n2:eth0:in", "n2:flannel0:in",
               "n2:docker0:out", "n2:{veth}:out"],
    Mode.vxlan: ["n1:{veth}:in", "n1:docker0:in", "n1:flannel.1:out", "n1:eth0:out", "n2:eth0:in",
                 "n2:flannel.1:in", "n2:docker0:out", "n2:{veth}:out"],
    Mode.host_gw: ["n1:{veth}:in", "n1:docker0:in", "n1:eth0:out", "n2:eth0:in", "n2:docker0:out", "n2:{veth}:out"],
}
EXPECTED[Mode.static] = EXPECTED[Mode.host_gw]
EXPECTED[Mode.host_gw] = EXPECTED.pop(Mode.host_gw)  # last, as the faults below begin in host-gw: one switch less
LAST_TTL = {Mode.udp: 60, Mode.vxlan: 62, Mode.host_gw: 62, Mode.static: 62}


@pytest.mark.parametrize("mode", list(EXPECTED), ids=lambda m: m.value)
def test_observed_hops_equal_the_modes_and_encapsulation_is_right(in_mode, mode):
    lab = in_mode(mode)
    code, out = trace("n1", "n2")
    (t,) = out["traces"]
    assert code == 0 and t["mode"] == mode.value
    veth = t["hops"][0]["hop"]["iface"]
    assert [h["hop"]["label"] for h in t["hops"]] == [x.format(veth=veth) for x in EXPECTED[mode]]
    assert all(h["seen"] == t["probes"] == 20 for h in t["hops"])
    assert t["differences"] == []
    assert [v["kind"] for v in t["verdicts"]] == ["delivered"]  # a good path gets no false verdict
    n1, n2 = lab.node("n1").spec.address, lab.node("n2").spec.address
    underlay = [h for h in t["hops"] if h["hop"]["iface"] == "eth0"]
    for h in underlay:
        e = h["encap"]
        if mode is Mode.udp:
            assert (e["type"], e["outer_src"], e["outer_dst"], e["port"]) == ("udp", n1, n2, 8285)
        elif mode is Mode.vxlan:
            assert (e["type"], e["port"], e["vni"]) == ("vxlan", 8472, 1)
            assert e["inner_mac_dst"] == lab.state.vtep_macs["n2"]
        else:
            assert e == {}
    assert t["hops"][-1]["ttl"] == LAST_TTL[mode]
    times = [h["t_p50_us"] for h in t["hops"]]
    assert times == sorted(times) and times[-1] < 5000, \
        [(h["hop"]["label"], h["t_p50_us"], h["t_p90_us"]) for h in t["hops"]]  # µs since the first hop, growing
    assert t["path_mtu"]["largest_delivered"] == mode.mtu() == t["path_mtu"]["expected_mtu"]
    assert t["clock"].startswith("shared clock")


def test_a_rate_limit_is_reported_without_failing_the_path(in_mode):
    lab = in_mode(Mode.host_gw)
    lab.add_fault(Fault("rate", "n1", rate="50mbit"))
    try:
        code, out = trace("n1", "n2", "--no-mtu")
    finally:
        lab.clear_faults()
    kinds = {v["kind"]: v for v in out["traces"][0]["verdicts"]}
    assert code == 0 and "delivered" in kinds
    assert kinds["rate-limited"]["ok"] and kinds["rate-limited"]["node"] == "n1"
    assert "tbf at 50 Mbit/s" in kinds["rate-limited"]["message"]


# (mode, fault, trace src->dst, verdict, node at fault, hop where the probes were last seen)
# grouped by mode (host-gw, vxlan, udp), each group in one stretch: a lab mode switch costs seconds
FAULTS = [
    (Mode.host_gw, Fault("no-route", "n1", peer="n2"), ("n1", "n2"), "no-route", "n1", "n1:docker0:in"),
    (Mode.host_gw, Fault("mtu", "n2", mtu=1400), ("n1", "n2"), "mtu-black-hole", "n2", "n1:eth0:out"),
    (Mode.host_gw, Fault("forwarding-off", "n1"), ("n1", "n2"), "forwarding-disabled", "n1", "n1:docker0:in"),
    (Mode.host_gw, Fault("forwarding-off", "n2"), ("n1", "n2"), "forwarding-disabled", "n2", "n2:eth0:in"),
    (Mode.host_gw, Fault("asymmetric", "n2", peer="n1"), ("n1", "n2"), "reply-path-missing", "n2", None),
    (Mode.host_gw, Fault("rp-filter", "n2", peer="n1"), ("n1", "n2"), "rp-filter-drop", "n2", "n2:eth0:in"),
    (Mode.host_gw, Fault("loss", "n1", percent=30), ("n1", "n2"), "packet-loss", "n1", "n1:eth0:out"),
    (Mode.vxlan, Fault("block-encap", "n2"), ("n1", "n2"), "encap-blocked", "n2", "n2:eth0:in"),
    (Mode.vxlan, Fault("mtu", "n2", mtu=1400), ("n1", "n2"), "mtu-black-hole", "n2", "n1:eth0:out"),
    (Mode.udp, Fault("no-route", "n1"), ("n1", "n2"), "no-route", "n1", "n1:docker0:in"),
    (Mode.udp, Fault("daemon-stop", "n1"), ("n1", "n2"), "overlay-daemon-down", "n1", "n1:docker0:in"),
    (Mode.udp, Fault("block-encap", "n2"), ("n1", "n2"), "encap-blocked", "n2", "n2:eth0:in"),
]


@pytest.mark.parametrize("mode, fault, pair, kind, node, hop", FAULTS,
                         ids=[f"{m.value}-{f.kind}-{f.node}" for m, f, *_ in FAULTS])
def test_each_fault_gets_its_verdict_naming_node_and_hop(in_mode, mode, fault, pair, kind, node, hop):
    lab = in_mode(mode)
    lab.add_fault(fault)
    try:
        code, out = trace(*pair, "--probes", "30")
    finally:
        lab.clear_faults()
    (t,) = out["traces"]
    failing = [v for v in t["verdicts"] if not v["ok"]]
    assert code == 1 and failing, t["verdicts"]
    v = failing[0]
    assert (v["kind"], v["node"]) == (kind, node), v
    if hop:
        assert v["hop"] == hop, v
    assert v["message"] and v["evidence"], v
    # and after clear the same path is healthy again, at its full MTU (pings, not a second trace: that
    # was 2 s a case; the traces of a healthy path are the tests above)
    src, dst = pair
    full = ["ping", "-n", "-q", "-c", "3", "-i", "0.05", "-W", "1", "-M", "do", "-s", str(mode.mtu() - 28)]
    healthy = lab.node(src).run(["ip", "netns", "exec", "nb-pod1", *full, lab.pod_ip(dst)], check=False)
    assert healthy.exit_code == 0 and " 3 received" in healthy.stdout, healthy.stdout + healthy.stderr


def test_trace_all_gives_a_verdict_for_every_ordered_pair(in_mode):
    in_mode(Mode.none)
    code, out = trace("--all", "--no-mtu", "--probes", "5")
    pairs = {(t["src"], t["dst"]): t for t in out["traces"]}
    assert code == 1 and len(pairs) == 6
    for (src, _dst), t in pairs.items():
        v = next(v for v in t["verdicts"] if not v["ok"])
        assert v["kind"] == "no-route" and v["node"] == src


def test_host_trace_follows_the_underlay_only(in_mode):
    lab = in_mode(Mode.vxlan)
    code, out = trace("n1", "n3", "--host")
    (t,) = out["traces"]
    assert code == 0 and [h["hop"]["label"] for h in t["hops"]] == ["n1:eth0:out", "n3:eth0:in"]
    assert all(h["encap"] == {} and h["ttl"] == 64 for h in t["hops"])  # no overlay, no forwarding
    assert t["path_mtu"]["largest_delivered"] == t["path_mtu"]["expected_mtu"] == 1500
    assert t["verdicts"][0]["kind"] == "delivered" and lab.mode is Mode.vxlan  # pods' mode does not matter here
