"""The size sweep's figures as first-class results (run --sizes): per-size intervals in the tidy table of
intervals, a gap named by its size, gate rules that judge one size. Synthetic records and samples; the
fake cluster only where the run itself is under test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from netbench import gaps, gates, stats
from netbench.plan import make_plan, plan_record
from netbench.report import summary
from netbench.results import COLUMNS
from netbench.run import RunOptions, Session
from tests.fakes import fake_cluster  # noqa: F401 — a fixture

NODES = ["n1", "n2", "n3"]
PAIRS = [("n1", "n2"), ("n1", "n3"), ("n2", "n3")]
RTT = {None: 40.0, 64: 40.0, 1400: 90.0}  # µs: the median of each size's samples (None: the test's own)
GBPS = {None: 9.0, 512: 2.0, 1400: 8.0}  # tcp's, per size


def rec(test, metric, value, src, dst, size=None, scenario="pod-pod", repeat=0, mode="vxlan"):
    return {"run": "r", "mode": mode, "scenario": scenario, "src": src, "dst": dst, "test": test, "metric": metric,
            "value": value, "unit": "", "repeat": repeat, "round": None, "size": size, "time": 0.0}


def run_records(skip: tuple = ()) -> tuple[pd.DataFrame, list[dict]]:
    """udp_rr (its own and at 64 and 1400 bytes) between every pair, its samples; tcp (its own and at 512 and
    1400) both ways, 2 repeats each: 12 values per size. `skip`: (src, dst, test, size) left unmeasured."""
    rng = np.random.default_rng(7)
    rows, samples = [], []
    for size, rtt in RTT.items():
        for a, b in PAIRS:
            if (a, b, "udp_rr", size) in skip:
                continue
            x = rng.normal(rtt, rtt / 10, 400)
            if size == 1400 and (a, b) == ("n2", "n3"):
                x = x + 60  # one slow pair at 1400 bytes
            samples.append({"mode": "vxlan", "scenario": "pod-pod", "src": a, "dst": b, "test": "udp_rr",
                            "rtt_us": list(x), **({"size": size} if size else {})})
            rows += [rec("udp_rr", "reachable", 1, a, b, size)]
            rows += [rec("udp_rr", f"rtt_p{q}_us", np.percentile(x, q), a, b, size) for q in (50, 99)]
    for size, gbps in GBPS.items():
        for a, b in PAIRS + [(b, a) for a, b in PAIRS]:
            for repeat in range(2):
                if (a, b, "tcp", size) not in skip:
                    value = gbps * (1 + 0.02 * repeat) + 0.01 * len(a + b)
                    rows.append(rec("tcp", "gbps", value, a, b, size, repeat=repeat))
    return pd.DataFrame(rows, columns=COLUMNS), samples


def meta(finished: bool = True) -> dict:
    passes = [(1, None, make_plan(NODES, ("pod-pod",)))]
    plan = plan_record(NODES, ("udp_rr", "tcp"), None, False, False, passes, frozenset(),
                       {"udp_rr": [64, 1400], "tcp": [512, 1400]})
    return {"plan": plan, "finished": finished, "mode": "vxlan", "failures": [], "nodes_down": []}


def test_every_size_gets_its_own_figures_with_the_intervals_of_the_runs_methods():
    records, samples = run_records()
    df, own = summary.at_size(records, samples, None)
    sweep = records[records["size"].notna()]
    sized = summary.per_size(sweep, [s for s in samples if "size" in s])
    assert [(r["test"], r["size"]) for r in sized] == [("udp_rr", 64), ("udp_rr", 1400), ("tcp", 512), ("tcp", 1400)]
    table = summary.intervals(df, own, sized=sized)
    assert list(table.columns) == ["mode", "scenario", "test", "size", "metric", "value", "ci_lo", "ci_hi", "level",
                                   "note"]
    at = table.set_index(["test", "size", "metric"])
    for size in (64, 1400):  # RTT: the bootstrap over the raw samples of that size only
        mine = [s["rtt_us"] for s in samples if s.get("size") == size]
        p50, p99 = stats.from_samples(mine, [50.0, 99.0])
        for metric, e in (("rtt_p50_us", p50), ("rtt_p99_us", p99)):
            row = at.loc[("udp_rr", size, metric)]
            assert (row.value, row.ci_lo, row.ci_hi) == pytest.approx((e.value, e.lo, e.hi))
            assert row.ci_lo < row.value < row.ci_hi
    assert at.loc[("udp_rr", 1400, "rtt_p50_us")].value > 1.5 * at.loc[("udp_rr", 64, "rtt_p50_us")].value
    for size in (512, 1400):  # Gbit/s: the median's interval over the size's pairs × repeats
        e = stats.from_values(sweep[(sweep["size"] == size) & (sweep.metric == "gbps")].value)
        row = at.loc[("tcp", size, "gbps")]
        assert (row.value, row.ci_lo, row.ci_hi) == pytest.approx((e.value, e.lo, e.hi)) and e.n == 12
        assert row.ci_lo <= GBPS[size] * 1.02 <= row.ci_hi
    own_rows = table[table["size"].isna()]  # the tests' own figures, as without a sweep
    assert set(own_rows.test) == {"udp_rr", "tcp"}
    assert own_rows.drop(columns="size").reset_index(drop=True).equals(summary.intervals(df, own))
    assert "size" not in summary.intervals(df, own).columns  # a run without --sizes keeps its table


def test_a_size_not_measured_is_a_gap_named_with_its_size():
    records, _ = run_records(skip=(("n1", "n3", "udp_rr", 1400), ("n2", "n1", "tcp", 512)))
    expected = gaps.Expected(meta(finished=False), records)
    found = [str(g) for g in gaps.all_missing(expected, records, [])]
    assert found == ["not measured: n1->n3 pod-pod udp_rr size 1400 (the run stopped before it)",
                     "not measured: n2->n1 pod-pod tcp size 512 (the run stopped before it)"]
    whole, _ = run_records()
    assert gaps.all_missing(expected, whole, []) == []
    # read without the sweep's records, every size of every pair is missing: the sweep is planned too
    assert len(gaps.all_missing(expected, whole[whole["size"].isna()], [])) == 2 * 3 + 2 * 6


def test_a_failure_at_one_size_is_the_reason_of_that_sizes_gap_only():
    records, _ = run_records(skip=(("n1", "n3", "udp_rr", 1400),))
    m = meta() | {"failures": [{"where": "n1->n3", "what": "pod-pod udp_rr size 1400", "cause": "agent: timeout"}]}
    (gap,) = gaps.all_missing(gaps.Expected(m, records), records, [])
    assert (gap.size, gap.why) == (1400, "agent: timeout")


def rules(tmp_path, text):
    path = tmp_path / "gates.yaml"
    path.write_text("gates:\n" + text)
    return gates.parse_rules(path)


def test_a_gate_on_one_size_judges_that_sizes_figures_and_its_gaps(tmp_path):
    records, samples = run_records()
    at_1400, at_64, own, tcp = rules(tmp_path, (
        "  - {name: p99 at 1400, check: 'udp_rr.rtt_p99_us < 150', size: 1400}\n"
        "  - {name: p99 at 64, check: 'udp_rr.rtt_p99_us < 150', size: 64}\n"
        "  - {name: p99, check: 'udp_rr.rtt_p99_us < 150'}\n"
        "  - {name: small mss near the host, check: 'tcp.gbps >= 1', size: 512}\n"))
    expected = gaps.Expected(meta(), records)
    out = gates.evaluate([at_1400, at_64, own, tcp], records, [], samples=samples, expected=expected)
    assert [o.passed for o in out] == [False, True, True, True]
    slow = records.query("size == 1400 and src == 'n2' and dst == 'n3' and metric == 'rtt_p99_us'").value.iloc[0]
    assert out[0].violations == [f"n2->n3: {slow:.3g} (needs < 150)"]
    assert out[0].summary.startswith("vxlan pod-pod size 1400: worst udp_rr.rtt_p99_us")
    assert out[3].summary == "vxlan pod-pod size 512: worst tcp.gbps = 2.06 over 6 pairs"
    assert out[0].as_dict()["size"] == 1400 and "size" not in out[2].as_dict()
    assert 'name="p99 at 1400 [vxlan pod-pod size 1400]"' in gates.junit(out, "r")
    # one pair at 64 bytes not measured: that rule fails naming it; the test's own and the other size do not
    missing, _ = run_records(skip=(("n1", "n2", "udp_rr", 64),))
    reach_64, reach_1400, reach = rules(tmp_path, "  - {name: r64, reachable: true, size: 64}\n"
                                        "  - {name: r1400, reachable: true, size: 1400}\n"
                                        "  - {name: r, reachable: true}\n")
    out = gates.evaluate([at_1400, at_64, own, reach_64, reach_1400, reach], missing, [],
                         expected=gaps.Expected(meta(False), missing))
    assert [o.passed for o in out] == [False, False, True, False, True, True]
    assert out[1].violations == out[3].violations == [
        "not measured: n1->n2 pod-pod udp_rr size 64 (the run stopped before it)"]
    assert out[4].summary == "vxlan pod-pod size 1400: 3 of 3 pairs reachable"


def test_a_regression_gate_on_one_size_tests_that_size_against_the_baseline(tmp_path):
    (rule,) = rules(tmp_path, "  - {name: small mss, regression: tcp.gbps, tolerance_pct: 10, size: 512}\n")
    base, _ = run_records()
    now = base.copy()
    now.loc[(now["size"] == 512) & (now.metric == "gbps"), "value"] *= 0.5
    (o,) = gates.evaluate([rule], now, [], baseline=base)
    assert o.passed is False and "vxlan pod-pod size 512: tcp.gbps" in o.summary and "-50.0% worse" not in o.summary
    assert "+50.0% worse" in o.summary
    (o,) = gates.evaluate([rule], base, [], baseline=base)
    assert o.passed is True


@pytest.mark.parametrize("rule, problem", [
    ("{name: a, path: true, size: 64}", "size applies to check, regression and reachable rules"),
    ("{name: a, check: 'tcp_multi.gbps > 1', size: 512}",
     "size: the size sweep measures udp_rr and tcp, not tcp_multi"),
    ("{name: a, check: 'tcp.gbps > 1', size: 64}", "size: tcp is swept from an MSS of 88 bytes (got 64)"),
    ("{name: a, check: 'udp_rr.rtt_p50_us < 9', size: 8}", "size must be a message size in whole bytes, 16 to 65000 "
                                                           "(got 8)"),
    ("{name: a, check: 'udp_rr.rtt_p50_us < 9', size: '512'}", "size must be a message size in whole bytes, 16 to "
                                                               "65000 (got '512')"),
    ("{name: a, check: 'udp_rr.rtt_p50_us < 9', size: true}", "size must be a message size in whole bytes"),
])
def test_a_size_a_sweep_cannot_have_is_refused_naming_file_line_and_rule(tmp_path, rule, problem):
    with pytest.raises(gates.GateRulesError) as caught:
        rules(tmp_path, f"  - {rule}\n")
    assert caught.value.problems[0].startswith(f"{tmp_path / 'gates.yaml'}:2: rule 'a': {problem}")


def test_a_run_with_sizes_keeps_the_sweeps_samples_apart_and_reports_every_size(fake_cluster, tmp_path):  # noqa: F811
    from netbench.cli import measure as cli
    lab = fake_cluster("vxlan", ["n1", "n2"])
    opts = RunOptions(samples=20, repeats=1, scenarios=("pod-pod", "host-host"), tests=("udp_rr", "tcp"),
                      sizes=(64, 1400))
    out = Session(lab.nodes(), lab.pod_network, opts, tmp_path, {"path": "fake"}, transport=lab.transport).execute()
    run = out.run_dir
    assert sorted((s["scenario"], s["size"]) for s in run.samples(sweep=True)) == [
        ("host-host", 64), ("host-host", 1400), ("pod-pod", 64), ("pod-pod", 1400)]
    assert all("size" not in s for s in run.samples()) and len(run.samples(sweep=None)) == 6
    sized = summary.per_size(run.frame(sweep=True), run.samples(sweep=True))
    assert [(r["scenario"], r["test"], r["size"]) for r in sized] == [
        ("pod-pod", "udp_rr", 64), ("pod-pod", "udp_rr", 1400), ("host-host", "udp_rr", 64),
        ("host-host", "udp_rr", 1400), ("pod-pod", "tcp", 1400), ("host-host", "tcp", 1400)]
    assert all(r["ci"]["rtt_p50_us"] for r in sized if r["test"] == "udp_rr")  # 20 samples: p50 has one
    assert sized[4]["gbps_vs_host"] is not None  # against host-host at the same MSS
    assert json.loads(json.dumps(sized)) == sized  # as `run --json` prints it
    assert gaps.all_missing(gaps.Expected(run.meta(), run.frame(sweep=None)), run.frame(sweep=None), []) == []
    with cli.console.capture() as captured:
        cli._print_sizes(sized, by_mode=False)
    lines = captured.get().splitlines()
    assert any("pod-pod" in ln and "udp_rr" in ln and "1400" in ln and "[" in ln for ln in lines), lines
    assert sum(" tcp " in ln and " 1400 " in ln for ln in lines) == 2  # pods and hosts
    # the report and summary.md carry the same table
    from netbench.report import html
    written = html.write(run.path)
    page, md = written["html"].read_text(), written["summary"].read_text()
    p50 = summary.figure(sized[1], "rtt_p50_us", ".0f")
    assert "[" in p50 and f"<td>pod-pod</td><td>udp_rr</td><td>1400</td><td>1</td><td>{p50}</td>" in page
    assert "**Size sweep**" in md and f"| pod-pod | udp_rr | 1400 | 1 | {p50} |" in md


def test_compare_sets_each_size_beside_the_same_size_and_calls_a_slower_size_worse(tmp_path):
    from netbench.measure import latency
    from netbench.report import compare
    from netbench.results import RunDir
    rng = np.random.default_rng(5)

    def stored(name: str, slower_at: int) -> object:
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.write_meta({"mode": "vxlan"})
        for size in (None, 64, 1400):
            for a, b in PAIRS:
                x = list(rng.normal(RTT[size], RTT[size] / 10, 600) * (1.3 if size == slower_at else 1))
                run.append(latency.records("udp_rr", x, 600, "pod-pod", a, b), "vxlan", size=size)
                run.append_samples("vxlan", "pod-pod", a, b, "udp_rr", x, size=size)
        return run.path
    names, df = compare.compare([stored("before", 0), stored("after", 1400)])
    p50 = df[df.metric == "rtt_p50_us"].set_index("size", drop=False)
    assert list(p50["size"].astype("object").where(p50["size"].notna(), None)) == [None, 64, 1400]
    assert list(p50["after verdict"]) == [stats.SAME, stats.SAME, stats.WORSE]
    assert 1.2 < p50["after ratio"].iloc[2] < 1.4 and p50["after test"].iloc[2] == stats.TESTS[stats.SAMPLES]
    plain = []  # runs without a sweep: compare's table keeps the columns it always had
    for name in ("plain-a", "plain-b"):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.write_meta({"mode": "vxlan"})
        run.append(latency.records("udp_rr", [40.0, 41.0, 42.0], 3, "pod-pod", "n1", "n2"), "vxlan")
        plain.append(run.path)
    assert "size" not in compare.compare(plain)[1].columns
