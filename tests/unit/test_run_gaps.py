"""Gaps: what a run planned and did not measure. Runs on the scripted fake cluster (tests/fakes.py), then
the gates, compare and the report read the run directory back and must see what is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netbench import gaps, gates
from netbench.errors import UserError
from netbench.report import compare, html
from netbench.run import RunOptions, Session
from tests.fakes import fake_cluster  # noqa: F401 — a fixture

NODES = ["n1", "n2", "n3"]
DOWN = "n2 down: connect: n2: cannot reach 198.18.0.2:22: No route to host"
RULES = """gates:
  - name: every pod pair reachable
    reachable: true
  - name: pod tcp at least 1 Gbit/s
    check: "tcp.gbps >= 1"
  - name: pod tcp near the host
    check: "tcp.gbps / baseline >= 0.5"
"""


def run(lab, tmp_path, **options):
    opts = dict(samples=20, repeats=1, scenarios=("pod-pod", "host-host"), tests=("udp_rr", "tcp")) | options
    return Session(lab.nodes(), lab.pod_network, RunOptions(**opts), tmp_path / "runs", {"path": "fake"},
                   transport=lab.transport).execute()


def netbench(*args):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return gates.parse_rules(path)


def test_a_node_down_fails_reachable_naming_each_missing_pair_and_why(fake_cluster, tmp_path, rules):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    lab["n2"].unreachable()
    out = run(lab, tmp_path)
    assert out.nodes_down == ["n2"]

    reach, tcp, ratio = gates.apply(out.run_dir.path, rules)
    # before the plan was recorded this passed: the pairs of n2 left no record, so nothing looked missing
    assert reach.passed is False
    assert reach.violations == [f"not measured: n1->n2 pod-pod udp_rr ({DOWN})",
                                f"not measured: n2->n3 pod-pod udp_rr ({DOWN})"]
    assert reach.summary == "vxlan pod-pod: 1 of 1 pairs reachable; 2 planned not measured"
    assert tcp.passed is False  # n1<->n3 is fast; the four directions with n2 were never measured
    assert [v.split(" (")[0] for v in tcp.violations] == [f"not measured: {p} pod-pod tcp" for p in
                                                          ("n1->n2", "n2->n1", "n2->n3", "n3->n2")]
    # the ratio also misses n2's host baseline
    assert sum("host-host tcp" in v for v in ratio.violations) == 4 and ratio.passed is False
    assert json.loads((out.run_dir.path / "gates.json").read_text())[0]["passed"] is False


def test_a_mode_that_could_not_be_set_is_failed_not_skipped(fake_cluster, tmp_path, rules):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])

    def switch(mode):
        if mode == "udp":
            raise RuntimeError("flanneld did not come up")
    s = Session(lab.nodes(), lab.pod_network, RunOptions(samples=20, repeats=1, scenarios=("pod-pod", "host-host"),
                                                         tests=("udp_rr",), modes=("vxlan", "udp")),
                tmp_path, {"path": "fake"}, transport=lab.transport)
    out = s.execute(switch)
    outcomes = {(o.rule.name, o.mode): o for o in gates.apply(out.run_dir.path, rules)}
    assert outcomes[("every pod pair reachable", "vxlan")].passed is True
    udp = outcomes[("every pod pair reachable", "udp")]
    assert udp.passed is False and udp.violations == [
        "not measured: n1->n2 pod-pod udp_rr (mode udp could not be set: flanneld did not come up)"]


def test_a_run_without_a_plan_is_judged_on_what_it_has(tmp_path, rules):
    """A run directory of schema 1 has no plan: gates judge what it measured, as before."""
    from netbench.measure import Record
    from netbench.results import RunDir
    old = RunDir.create(tmp_path, "old")
    (old.path / "run.json").write_text(json.dumps({"schema_version": 1, "run_id": old.run_id, "mode": "vxlan",
                                                   "finished": 1.0e9}))
    old.append([Record("pod-pod", "a", "b", "udp_rr", "reachable", 1.0, "bool")], "vxlan")
    reach = gates.apply(old.path, rules)[0]
    assert reach.passed is True and not gaps.Expected(old.meta()).known


def test_compare_refuses_an_unfinished_or_empty_run_and_the_report_says_where_it_stopped(
        fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    good = run(lab, tmp_path).run_dir
    assert compare.incomplete([good.path]) == []

    lab = fake_cluster("vxlan", NODES)
    lab["n1"].raise_on("iperf3", KeyboardInterrupt())  # Ctrl-C in n1's first throughput step
    with pytest.raises(KeyboardInterrupt):
        run(lab, tmp_path / "cut")
    (cut,) = (tmp_path / "cut" / "runs").iterdir()
    (problem, fatal), = compare.incomplete([cut])
    assert fatal and problem.startswith(f"{cut.name}: the run did not finish: stopped by KeyboardInterrupt during ")
    assert "; last measured: vxlan " in problem

    empty = tmp_path / "empty" / "runs"
    lab = fake_cluster("vxlan", NODES)
    for node in NODES:
        lab[node].unreachable()
    run(lab, tmp_path / "empty")
    (empty,) = empty.iterdir()
    assert compare.incomplete([empty]) == [(f"{empty.name}: measured nothing", True)]

    proc = netbench("compare", str(good.path), str(cut))
    assert proc.returncode == 1 and "cannot compare" in proc.stderr and "did not finish" in proc.stderr
    proc = netbench("compare", str(good.path), str(empty))
    assert proc.returncode == 1 and f"{empty.name}: measured nothing" in proc.stderr

    out = html.write(cut)
    page = out["html"].read_text()
    assert "Incomplete run: the run did not finish: stopped by KeyboardInterrupt during" in page
    assert "planned measurements not made" in page and "not measured: n1-&gt;n3 pod-pod tcp" in page
    assert "**Incomplete**" in out["summary"].read_text()
    assert "Incomplete run" not in html.write(good.path)["html"].read_text()


def test_a_killed_run_is_recognisable(fake_cluster, tmp_path):  # noqa: F811
    """kill -9 leaves run.json as it was written at the start: finished false, no stop recorded."""
    lab = fake_cluster("vxlan", NODES)
    done = run(lab, tmp_path).run_dir
    meta = done.meta()
    meta.update(finished=False)
    meta.pop("ended")
    done.write_meta(meta)
    expected = gaps.Expected(done.meta())
    assert expected.stop_note() == "the run did not finish (killed, or still running: run.json says finished: false)"
    proc = netbench("gate", str(done.path), "--rules", str(Path(__file__).parents[2] / "configs" / "gates.yaml"))
    assert "note: the run did not finish (killed" in proc.stderr


def test_a_plan_that_names_unknown_nodes_is_a_user_error(tmp_path):
    meta = {"plan": {"nodes": ["a"], "pairs": [["a", "zz"]], "tests": ["tcp"], "passes": [{"mode": None,
                                                                                          "scenarios": ["pod-pod"]}]}}
    with pytest.raises(UserError, match="run.json: plan: pair names unknown node 'zz'"):
        gaps.Expected(meta)


def test_only_the_planned_pairs_count(fake_cluster, tmp_path, rules):  # noqa: F811
    """--pairs n1:n2 plans nothing with n3: n3 being down leaves no gap; n1-n2 measured both ways."""
    lab = fake_cluster("vxlan", NODES)
    lab["n3"].unreachable()
    out = run(lab, tmp_path, pairs=[("n2", "n1")], parallel_pairs=True)
    assert out.run_dir.meta()["plan"]["pairs"] == [["n2", "n1"]]
    assert all(o.passed for o in gates.apply(out.run_dir.path, rules))
    df = out.run_dir.frame()
    assert gaps.all_missing(gaps.Expected(out.run_dir.meta(), df), df, []) == []


def test_compare_counts_a_runs_traces_as_made(fake_cluster, tmp_path):  # noqa: F811
    """compare does not compare traces, but the run's are there: no "planned measurement(s) not made"
    note for a run with --trace whose every planned trace was made (each run of a compare got one)."""
    lab = fake_cluster("vxlan", NODES)
    out = run(lab, tmp_path, trace=True)
    traces = out.run_dir.traces()
    assert {(t["src"], t["dst"]) for t in traces} == {("n1", "n2"), ("n1", "n3"), ("n2", "n3")}
    assert compare.incomplete([out.run_dir.path]) == []
    (out.run_dir.path / "traces.json").write_text("[]")  # the traces gone: now they are missing, and said so
    (problem, fatal), = compare.incomplete([out.run_dir.path])
    assert not fatal and "3 planned measurement(s) not made, e.g. not measured: n1->n2 pod-pod trace" in problem
