"""`netbench run` orchestration (run.Session) on scripted nodes: what is measured, what is marked down,
what is cleaned, when a node fails at each step. No root, no SSH: tests/fakes.py plays the nodes."""

from __future__ import annotations

import json
import signal
import threading

import numpy as np
import pytest

from netbench import gaps, probes
from netbench.run import RunOptions, Session
from tests.fakes import data, fake_cluster  # noqa: F401 — fake_cluster is a fixture

NODES = ["n1", "n2", "n3"]
ALL = {("n1", "n2"), ("n1", "n3"), ("n2", "n3")}
BOTH_WAYS = ALL | {(b, a) for a, b in ALL}


def session(lab, tmp_path, progress=None, **options) -> Session:
    opts = dict(samples=20, repeats=1, scenarios=("pod-pod",), tests=("udp_rr", "tcp")) | options
    return Session(lab.nodes(), lab.pod_network, RunOptions(**opts), tmp_path, {"path": "fake"},
                   progress=progress, transport=lab.transport)


def pairs(df, test: str) -> set[tuple[str, str]]:
    rows = df[df.test == test]
    return set(zip(rows.src, rows.dst, strict=True))


def where_what(failures) -> list[tuple[str, str]]:
    return sorted((f.where, f.what) for f in failures)


def assert_clean(node) -> None:
    assert node.pods == {}, f"{node.name} still has probe pods {sorted(node.pods)}"
    assert node.running == [], f"{node.name} still runs {node.running}"
    assert not node.workdir


def test_every_pair_is_measured_and_nothing_is_left(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    s = session(lab, tmp_path, scenarios=("pod-pod", "pod-pod-same-node", "host-host"),
                tests=("udp_rr", "icmp", "tcp"))
    out = s.execute()

    assert (out.exit_code, out.mode, out.failures, out.nodes_down) == (0, "vxlan", [], [])
    df = out.run_dir.frame()
    for scenario in ("pod-pod", "host-host"):
        part = df[df.scenario == scenario]
        assert pairs(part, "udp_rr") == pairs(part, "icmp") == ALL
        assert pairs(part, "tcp") == ALL | {(b, a) for a, b in ALL}
    assert pairs(df[df.scenario == "pod-pod-same-node"], "tcp") == {(n, n) for n in NODES}
    recorded = json.loads(data("agent-ping.json"))["rtt_ns"]
    p50 = df[(df.test == "udp_rr") & (df.metric == "rtt_p50_us")].value
    assert list(p50) == pytest.approx([np.percentile(recorded, 50) / 1000] * 9)
    gbps = df[(df.test == "tcp") & (df.metric == "gbps")].value
    assert list(gbps) == pytest.approx([13.631030069484906] * 15)  # what iperf3 printed on the lab
    # pod-pod ran between the probe pods on the pod network, host-host between the node addresses
    pod_ping = lab["n1"].ran("agent-ping")[0]
    assert pod_ping.ns == "nb-probe-1" and pod_ping.argv[pod_ping.argv.index("--dst") + 1].startswith("10.1.")
    # every udp_rr ping went through the source endpoint's agent session, tagged with the run's id (the
    # node's lock finds it by that), one session per endpoint; icmp pings are one-off processes
    assert len(lab["n1"].sessions) == len(lab["n1"].ran("agent-ping")) == 5  # 2 + same-node + 2 host
    assert {tuple(argv) for argv in lab["n1"].sessions} == {
        (*wrap, *probes.session_argv(s.lock.run_id)) for wrap in ([], ["ip", "netns", "exec", "nb-probe-1"])}
    assert all(node.sessions_ended >= 1 for node in lab)  # closed once the latency steps were done
    for node in lab:
        # the node is taken before anything else and released last; nothing else cleans anything
        assert node.kinds[:2] == ["acquire", "facts"] and node.kinds[-1] == "release"
        assert len(node.ran("release")) == 1 and node.ran("clean") == []
        assert node.ran("acquire")[0].argv[5] == s.lock.run_id == node.ran("release")[0].argv[5]
        # every pod was on the run's undo list before it was made (the fake refuses it otherwise)
        assert [u["name"] for u in node.undo] == [] and len(node.ran("undo")) == 2
        assert_clean(node)
        assert node.lock is None
    meta = out.run_dir.meta()
    assert meta["finished"] is True and meta["ended"] >= meta["started"] and meta["stopped"] is None
    assert meta["nodes_down"] == [] and meta["mode"] == "vxlan"
    # the plan: 3 pairs x (2 latency tests + tcp both ways) in pod-pod and host-host, 3 nodes in same-node
    assert meta["plan"]["nodes"] == NODES and meta["plan"]["passes"] == [
        {"round": 1, "mode": None, "scenarios": ["pod-pod", "pod-pod-same-node", "host-host"]}]
    assert meta["plan"]["measurements"] == 2 * (3 * 2 + 6) + 3 * 2 + 3
    assert gaps.all_missing(gaps.Expected(meta, df), df, []) == []


def test_a_failed_deploy_marks_the_node_down_and_is_still_cleaned(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2"].fail("start-agent", stderr="OSError: [Errno 98] Address already in use")  # its pod's agent
    s = session(lab, tmp_path)
    out = s.execute()

    assert out.exit_code == 1 and out.nodes_down == ["n2"]
    deploy = [f for f in out.failures if f.what == "deploy"]
    assert [(f.where, f.cause) for f in deploy] == [
        ("n2", "n2: probe agent in nb-probe-1 did not start: OSError: [Errno 98] Address already in use")]
    skipped = [f for f in out.failures if f.cause == "skipped: a node of this pair is down"]
    assert sorted(f.where for f in skipped) == ["n1->n2", "n1->n2", "n2->n1", "n2->n3", "n2->n3", "n3->n2"]
    assert len(out.failures) == 7
    df = out.run_dir.frame()
    assert pairs(df, "udp_rr") == {("n1", "n3")} and pairs(df, "tcp") == {("n1", "n3"), ("n3", "n1")}
    assert s.deployed_to == set(NODES)
    # the teardown reached n2 and removed what its half-finished deploy had made
    # (pod-pod measures with one pod, its agent and iperf3 server: nothing else was made, the host's neither)
    assert json.loads(lab["n2"].ran("release")[-1].stdout) == {"pods": 1, "processes": 1}
    assert lab["n2"].kinds[-1] == "release" and "pod-create" in lab["n2"].kinds[:-1]
    for node in lab:
        assert_clean(node)
    assert out.run_dir.meta()["nodes_down"] == ["n2"]


def test_a_deploy_failing_half_way_through_the_pods_is_undone(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])
    lab["n2"].fail("pod-create", after=1, stderr="RTNETLINK answers: File exists")
    out = session(lab, tmp_path, scenarios=("pod-pod", "pod-pod-same-node")).execute()

    assert out.nodes_down == ["n2"]
    assert [f.what for f in out.failures if f.where == "n2"] == ["deploy"]
    assert "RTNETLINK answers: File exists" in out.failures[0].cause
    assert json.loads(lab["n2"].ran("release")[-1].stdout) == {"pods": 1, "processes": 0}
    assert pairs(out.run_dir.frame(), "udp_rr") == {("n1", "n1")}  # n1's own pods still measured
    assert_clean(lab["n2"])


def test_ctrl_c_between_steps_cleans_every_touched_node(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)

    def progress(what: str, steps: int) -> None:
        if what.startswith("probes on"):  # the probes are deployed, nothing is measured yet
            raise KeyboardInterrupt

    s = session(lab, tmp_path, progress)
    with pytest.raises(KeyboardInterrupt):
        s.execute()

    meta = s.run_dir.meta()
    assert meta["failures"] == [] and meta["mode"] == "unknown"
    assert meta["finished"] is False and meta["stopped"] == {"cause": "KeyboardInterrupt", "at": "probes on n1"}
    assert s.run_dir.frame().empty
    assert s.deployed_to == set(NODES)
    for node in lab:
        assert node.kinds[-1] == "release" and len(node.ran("release")) == 1
        assert_clean(node)


def test_an_interrupt_inside_a_step_keeps_what_was_measured(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n1"].raise_on("iperf3", KeyboardInterrupt())  # n1's first throughput step: n1->n3
    s = session(lab, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        s.execute()

    df = s.run_dir.frame()
    assert pairs(df, "udp_rr") == ALL
    assert pairs(df, "tcp") == {("n2", "n3")}  # measured before n1's step; nothing after it
    meta = s.run_dir.meta()
    assert meta["finished"] is False and meta["stopped"]["cause"] == "KeyboardInterrupt"
    # what was not measured is said so, and why: the run stopped
    missing = gaps.all_missing(gaps.Expected(meta, df), df, [])
    assert {(g.src, g.dst, g.test) for g in missing} == {(a, b, "tcp") for a, b in BOTH_WAYS - {("n2", "n3")}}
    assert {g.why for g in missing} == {"the run stopped before it"}
    for node in lab:
        assert_clean(node)


def test_a_node_lost_mid_run_is_marked_down_and_its_pairs_skipped(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    n1, n3 = lab["n1"], lab["n3"]
    # n3 goes away while n1 pings it (latency order: n2-n3, n1-n3, n1-n2)
    n1.before("agent-ping", lambda node, argv: n3.stop_answering(), when=lambda argv: "10.1.140.254" in argv)
    out = session(lab, tmp_path).execute()

    assert out.exit_code == 1 and out.nodes_down == ["n3"]
    assert where_what(out.failures) == sorted(
        [("n1->n3", "pod-pod udp_rr"), ("n3", "unreachable mid-run"), ("n3", "cleanup")]
        + [(p, "pod-pod") for p in ("n2->n3", "n1->n3", "n3->n2", "n3->n1")])
    lost = next(f for f in out.failures if f.what == "unreachable mid-run")
    assert lost.cause == "ssh connection lost: Socket is closed"
    df = out.run_dir.frame()
    assert pairs(df, "udp_rr") == ALL  # n2-n3 before the loss, n1-n3 as "no reply", n1-n2 after
    reachable = df[(df.metric == "reachable")].set_index(["src", "dst"]).value.to_dict()
    assert reachable == {("n2", "n3"): 1.0, ("n1", "n3"): 0.0, ("n1", "n2"): 1.0}
    assert pairs(df, "tcp") == {("n1", "n2"), ("n2", "n1")}
    assert [c.kind for c in n1.calls].count("alive") == 1  # the check after the failed step
    # n3 could not be cleaned, and the run says so; the others are clean
    assert list(n3.pods) == ["nb-probe-1"]
    assert_clean(lab["n1"])
    assert_clean(lab["n2"])


def test_a_source_lost_during_throughput(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n3"].stop_answering(after=0, counting="iperf3")  # answers everything up to its first iperf3 client
    out = session(lab, tmp_path).execute()

    assert out.nodes_down == ["n3"]
    step = next(f for f in out.failures if f.what == "pod-pod tcp")
    assert (step.where, step.cause) == ("n3->n2", "ssh connection lost: Socket is closed")
    lost = next(f for f in out.failures if f.what == "unreachable mid-run")
    assert lost.cause == "n3: cannot reach 198.18.0.3:22: No route to host"  # reconnecting failed
    df = out.run_dir.frame()
    assert pairs(df, "udp_rr") == ALL
    assert pairs(df, "tcp") == {("n2", "n3"), ("n1", "n3"), ("n1", "n2"), ("n2", "n1")}


def test_a_timed_out_step_fails_that_pair_only(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])
    lab["n1"].time_out("iperf3", when=lambda argv: "-u" in argv)
    out = session(lab, tmp_path, tests=("tcp", "udp")).execute()

    assert [(f.where, f.what, f.cause) for f in out.failures] == [("n1->n2", "pod-pod udp", "timed out after 17s")]
    assert out.exit_code == 1 and out.nodes_down == []
    df = out.run_dir.frame()
    assert pairs(df, "tcp") == {("n1", "n2"), ("n2", "n1")} and pairs(df, "udp") == {("n2", "n1")}
    assert len(lab["n1"].ran("alive")) == len(lab["n2"].ran("alive")) == 1  # both checked, both answer
    assert lab["n1"].ran("iperf3")[1].timeout == 17  # duration + 15 s


def test_unreachable_and_factless_nodes_are_never_deployed_to(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2"].unreachable()
    lab["n3"].fail("facts", 127, stderr="python3 is missing")
    s = session(lab, tmp_path, scenarios=("pod-pod-same-node",))
    out = s.execute()

    assert {f.where: f.what for f in out.failures} == {"n2": "connect", "n3": "facts", "n2->n2": "pod-pod-same-node",
                                                       "n3->n3": "pod-pod-same-node"}
    assert next(f.cause for f in out.failures if f.where == "n2") == "n2: cannot reach 198.18.0.2:22: No route to host"
    assert next(f.cause for f in out.failures if f.where == "n3").endswith("exited 127: python3 is missing")
    assert s.deployed_to == {"n1"}
    assert lab["n2"].calls == [] and lab["n3"].kinds == ["acquire", "facts", "release"]
    assert pairs(out.run_dir.frame(), "udp_rr") == {("n1", "n1")}


def test_ctrl_c_during_a_slow_deploy_leaves_no_pods(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    n2 = lab["n2"]

    def ctrl_c(node, argv):
        # every node is deploying (the main thread waits in Fleet.each) when Ctrl-C arrives; n2's
        # `ip netns add` is slow and outlasts the teardown's cleanup of n2
        lab["n1"].wait_for("upload") and lab["n3"].wait_for("upload")
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        n2.wait_for("release")

    n2.before("pod-create", ctrl_c)
    s = session(lab, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        s.execute()
    # Fleet.each halts its workers and waits for them: n2's deploy stops at the command it was in
    assert not n2.wait_for("start-agent", timeout=0.5)
    lab.settle()

    assert len(n2.ran("release")) == 1
    assert n2.pods == {}, f"left on n2 after the run: {sorted(n2.pods)}"


@pytest.mark.parametrize("scenarios, tests, pods, servers", [
    (("pod-pod",), ("udp_rr",), ["nb-probe-1"], {("agent", "nb-probe-1")}),
    (("pod-pod", "pod-pod-same-node"), ("tcp",), ["nb-probe-1", "nb-probe-2"],
     {("iperf3", "nb-probe-1"), ("iperf3", "nb-probe-2")}),
    (("host-host",), ("icmp", "udp_rr", "udp"), [], {("agent", None), ("iperf3", None)}),
])
def test_a_node_gets_only_the_pods_and_servers_the_plan_measures_with(fake_cluster, tmp_path, scenarios, tests,  # noqa: F811
                                                                       pods, servers):
    lab = fake_cluster("vxlan", NODES)
    seen: dict[str, tuple] = {}

    def note(node, argv):  # what stands on n2 at the end of the run, before the release takes it down
        seen["n2"] = (sorted(node.pods), {(d.what, d.ns) for d in node.running})
    lab["n2"].before("release", note)
    out = session(lab, tmp_path, scenarios=scenarios, tests=tests).execute()

    assert out.exit_code == 0, out.failures
    assert seen["n2"] == (pods, servers)
    assert_clean(lab["n2"])
