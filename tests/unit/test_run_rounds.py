"""`run --rounds`: passes in rounds (each mode once per round, the host baseline in every round), records
that carry their round, "vs host" against the same round's baseline, and the gaps of a missing round.
Orchestration on the scripted fake cluster (tests/fakes.py); the statistics on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from netbench import gaps, gates, stats
from netbench.errors import InvalidValue
from netbench.plan import pass_order
from netbench.report import summary
from netbench.results import COLUMNS
from netbench.run import RunOptions, Session
from tests.fakes import data, fake_cluster  # noqa: F401 — a fixture

NODES = ["n1", "n2", "n3"]


def test_each_mode_once_per_round_the_order_reversed_every_other_round():
    assert pass_order(("udp", "vxlan", "frr"), 3) == [
        (1, "udp", True), (1, "vxlan", False), (1, "frr", False),
        (2, "frr", True), (2, "vxlan", False), (2, "udp", False),
        (3, "udp", True), (3, "vxlan", False), (3, "frr", False)]
    assert pass_order((), 2) == [(1, None, True), (2, None, True)]  # the cluster as it is, twice
    with pytest.raises(InvalidValue, match="--rounds: 0"):
        RunOptions(rounds=0)


def switching(lab, switched: list[str]):
    """The lab's mode switch on the fake: the nodes answer with the facts a real lab gave in that mode."""
    def switch(mode: str) -> None:
        switched.append(mode)
        raw = json.loads(data(f"facts-{mode}.json"))["raw"]
        for node in lab:
            node.raw_facts = raw[node.name]
    return switch


def rounds_run(lab, tmp_path, switch, **options):
    opts = dict(samples=20, repeats=1, scenarios=("pod-pod", "host-host"), tests=("udp_rr", "tcp"),
                modes=("vxlan", "host-gw"), rounds=2) | options
    return Session(lab.nodes(), lab.pod_network, RunOptions(**opts), tmp_path, {"path": "fake"},
                   transport=lab.transport).execute(switch)


def test_a_run_in_rounds_measures_every_mode_and_the_baseline_in_every_round(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    switched: list[str] = []
    out = rounds_run(lab, tmp_path, switching(lab, switched))
    assert out.failures == []
    meta = out.run_dir.meta()
    assert [(p["round"], p["mode"]) for p in meta["passes"]] == [(1, "vxlan"), (1, "host-gw"), (2, "host-gw"),
                                                                 (2, "vxlan")]
    assert switched == ["vxlan", "host-gw", "vxlan"]  # round 2 begins in the mode round 1 ended in
    for p in meta["passes"]:
        assert {d["mode"] for d in p["detected"].values()} == {p["mode"]}
    df = out.run_dir.frame()
    pod = df[(df.scenario == "pod-pod") & (df.metric.isin(["reachable", "gbps"]))]
    assert pod.groupby(["mode", "round"]).size().to_dict() == {(m, r): 3 + 6 for m in ("vxlan", "host-gw")
                                                                for r in (1, 2)}  # 3 pairs udp_rr, 6 tcp
    host = df[(df.scenario == "host-host") & (df.metric == "gbps")]
    assert host.groupby("round")["mode"].unique().map(list).to_dict() == {1: ["vxlan"], 2: ["host-gw"]}
    assert {s["round"] for s in out.run_dir.samples()} == {1, 2}
    plan = meta["plan"]
    assert plan["rounds"] == 2 and [p["round"] for p in plan["passes"]] == [1, 1, 2, 2]
    assert plan["passes"][2]["scenarios"] == ["pod-pod", "host-host"]  # round 2's first pass: the baseline
    assert gaps.all_missing(gaps.Expected(meta, df), df, []) == []
    rows = {r["mode"]: r for r in summary.per_mode(df, out.run_dir.samples())}
    assert rows["vxlan"]["host_baseline"] == rows["host-gw"]["host_baseline"] == "round"


def test_a_round_whose_mode_could_not_be_set_is_not_measured_there(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", NODES)
    real = switching(lab, [])
    calls = []

    def switch(mode):
        calls.append(mode)
        if len(calls) == 3:  # round 2's vxlan
            raise RuntimeError("flanneld did not come up")
        real(mode)
    out = rounds_run(lab, tmp_path, switch, tests=("udp_rr",), scenarios=("pod-pod",))
    assert [(f.where, f.what) for f in out.failures] == [("mode vxlan round 2", "switch")]
    rules = tmp_path / "rules.yaml"
    rules.write_text("gates:\n  - {name: reach, reachable: true}\n")
    outcomes = {o.mode: o for o in gates.apply(out.run_dir.path, gates.parse_rules(rules))}
    assert outcomes["host-gw"].passed is True
    vxlan = outcomes["vxlan"]
    why = "(mode vxlan could not be set: flanneld did not come up)"
    assert vxlan.passed is False and vxlan.violations == [
        f"not measured: {p} pod-pod udp_rr in round 2 {why}" for p in ("n1->n2", "n1->n3", "n2->n3")]


def test_a_same_round_ratio_cancels_a_drift_of_the_machine():
    """Round 2 runs everything 1.6x faster (another tenant left): each round's pod figure is half its host
    baseline. Against the same round's baseline the ratio is 0.5 with a tight interval; pooled, it is not."""
    rng = np.random.default_rng(3)
    host = [rng.normal(10, 0.2, 12), rng.normal(16, 0.3, 12)]
    pod = [h * 0.5 + rng.normal(0, 0.05, 12) for h in host]
    same = stats.round_ratio(pod, host)
    assert same.value == pytest.approx(0.5, abs=0.01) and 0.48 < same.lo <= same.hi < 0.52
    assert same.kind == stats.DERIVED and same.reps is not None
    pooled = stats.ratio(stats.from_values(pod[0]), stats.from_values(np.concatenate(host)))  # round 1 vs both
    assert pooled.value < 0.4  # what a baseline from another minute makes of it
    assert stats.round_ratio([[1.0]], [[2.0]]).note.startswith("n/a: 1 values")  # too few for an interval


def rec(mode, scenario, value, rnd, src="n1", dst="n2", repeat=0):
    return dict(run="r", mode=mode, scenario=scenario, src=src, dst=dst, test="tcp", metric="gbps", value=value,
                unit="Gbit/s", repeat=repeat, round=rnd, time=0)


def test_vs_host_and_the_ratio_gate_take_the_baseline_of_the_same_round(tmp_path):
    # vxlan measured in round 1 beside a host baseline of 10, host-gw in round 2 beside one of 20: each is
    # 0.9 of its round's host; against the run-wide median (15) vxlan would be 0.6 and host-gw 1.2
    rows = []
    for r, (mode, host) in enumerate((("vxlan", 10.0), ("host-gw", 20.0)), 1):
        for i in range(6):
            rows += [rec(mode, "host-host", host + i * 0.01, r, repeat=i),
                     rec(mode, "pod-pod", 0.9 * host + i * 0.01, r, repeat=i)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    per_mode = {r["mode"]: r for r in summary.per_mode(df)}
    for mode in ("vxlan", "host-gw"):
        e = per_mode[mode]["est"]["tcp_vs_host"]
        assert e.value == pytest.approx(0.9, abs=0.01) and e.has_interval and e.lo < 0.9 < e.hi + 0.01
        assert per_mode[mode]["host_baseline"] == "round"
    per_test = {(r["mode"], r["scenario"]): r for r in summary.per_test(df)}
    assert per_test[("host-gw", "pod-pod")][summary.VS_HOST] == pytest.approx(0.9, abs=0.01)
    rule = gates.Rule(name="near host", kind="ratio", line=1, scenario="pod-pod", test="tcp", metric="gbps",
                      op=">=", value=0.85)
    outcomes = {o.mode: o for o in gates.evaluate([rule], df, [])}
    assert outcomes["vxlan"].passed is True and outcomes["host-gw"].passed is True
    df_old = df.assign(round=float("nan"))  # a run from before rounds: its own pass's baseline
    assert {r["mode"]: r["host_baseline"] for r in summary.per_mode(df_old)}["vxlan"] == "mode"


# -- message sizes (run --sizes) -----------------------------------------------------------------------------
@pytest.mark.parametrize("sizes, message", [((64, 64), "names a size twice"), ((8,), "--sizes: 8 is not"),
                                            ((70000,), "--sizes: 70000 is not"), ((1.5,), "--sizes: 1.5 is not")])
def test_sizes_out_of_range_are_refused(sizes, message):
    with pytest.raises(InvalidValue, match=message):
        RunOptions(sizes=sizes)


def test_sizes_on_the_command_line_are_whole_bytes():
    from netbench.cli.measure import _sizes
    from netbench.errors import UserError
    assert _sizes("64, 512,1400") == (64, 512, 1400) and _sizes(None) == ()
    for bad in ("1.5", "64,big", "-64"):
        with pytest.raises(UserError, match="is not a whole number of bytes"):
            _sizes(bad)


def test_tcp_is_swept_from_its_smallest_mss_and_only_the_tests_asked_for():
    assert RunOptions(sizes=(64, 512, 1400)).swept() == {"udp_rr": [64, 512, 1400], "tcp": [512, 1400]}
    assert RunOptions(sizes=(1400, 64), tests=("udp_rr",)).swept() == {"udp_rr": [64, 1400]}
    with pytest.raises(InvalidValue, match="has neither"):
        RunOptions(sizes=(64,), tests=("tcp", "icmp"))  # 64 is below tcp's smallest MSS, icmp is not swept


def test_a_sweep_measures_each_size_and_keeps_it_apart_from_the_run_figures(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])
    opts = RunOptions(samples=20, repeats=1, scenarios=("pod-pod", "host-host"), tests=("udp_rr", "tcp"),
                      sizes=(64, 1400))
    out = Session(lab.nodes(), lab.pod_network, opts, tmp_path, {"path": "fake"}, transport=lab.transport).execute()
    assert out.failures == []
    sweep = out.run_dir.frame(sweep=True)
    p50 = sweep[sweep.metric == "rtt_p50_us"]
    assert sorted(zip(p50.scenario, p50["size"].astype(int), strict=True)) == [("host-host", 64), ("host-host", 1400),
                                                                   ("pod-pod", 64), ("pod-pod", 1400)]
    assert sorted(sweep[sweep.metric == "gbps"]["size"].astype(int)) == [1400] * 4  # both ways, pods and hosts
    assert out.run_dir.frame()["size"].isna().all()  # the run's figures are the tests' own
    assert len(out.run_dir.frame().query("metric == 'rtt_p50_us'")) == 2
    pings = [c.argv for c in lab["n1"].ran("agent-ping")]
    assert sorted(a[a.index("--size") + 1] for a in pings) == ["1400", "1400", "64", "64", "64", "64"]
    mss = [c.argv[c.argv.index("-M") + 1] for c in lab["n1"].ran("iperf3") if "-M" in c.argv]
    assert mss == ["1400", "1400"]  # n1->n2, pods and hosts; the plain tcp test has no -M
    assert len(out.run_dir.samples()) == 2  # the tests' samples only: the sweep's would mix sizes
    plan = out.run_dir.meta()["plan"]
    assert plan["sizes"] == {"udp_rr": [64, 1400], "tcp": [1400]}
    assert plan["measurements"] == 2 * (1 * 3 + 2 * 2)  # (udp_rr + 2 sizes) x 1 pair, (tcp + 1 size) x 2 ways
    from netbench.report import html, plots
    assert plots.sizes(out.run_dir.frame()) is None
    page = html.write(out.run_dir.path)["html"].read_text()
    section = page.split('id="sizes"')[1].split("<h2")[0]
    assert "against message size" in section and 'src="data:image/png;base64,' in section


def test_a_size_larger_than_the_pods_mtu_allows_is_refused_before_it_is_measured(fake_cluster, tmp_path):  # noqa: F811
    lab = fake_cluster("vxlan", ["n1", "n2"])  # vxlan pods: MTU 1450
    opts = RunOptions(samples=20, repeats=1, scenarios=("pod-pod",), tests=("udp_rr",), sizes=(64, 1450))
    with pytest.raises(InvalidValue, match=r"--sizes: 1450 bytes of udp_rr do not fit one packet on n1's pods "
                                           r"\(MTU 1450: at most 1422 bytes\)"):
        Session(lab.nodes(), lab.pod_network, opts, tmp_path, {"path": "fake"}, transport=lab.transport).execute()
    assert lab["n1"].ran("agent-ping") == [] and lab["n1"].lock is None  # nothing measured, the node released
