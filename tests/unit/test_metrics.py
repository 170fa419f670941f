"""The metric catalogue: consistent in itself, and every metric it declares reaches the tidy table, gates,
compare, the report and the CLI tables with nothing else to edit (a new metric is one entry there)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from netbench import gates, metrics, stats
from netbench.measure import latency, throughput
from netbench.plan import LATENCY_TESTS, THROUGHPUT_TESTS
from netbench.report import compare, html, summary
from netbench.results import RunDir

DATA = Path(__file__).parent / "data"
IPERF = {"tcp": "iperf3-tcp.json", "tcp_multi": "iperf3-tcp-P4.json", "udp": "iperf3-udp.json"}
EVERY = [(t, m.name) for t in metrics.TESTS for m in metrics.of_test(t)]


def test_the_catalogue_is_consistent():
    assert metrics.LATENCY == LATENCY_TESTS and metrics.THROUGHPUT == THROUGHPUT_TESTS
    for m in metrics.CATALOGUE:
        assert m.unit and m.label and m.better in (metrics.HIGHER, metrics.LOWER, "")
        assert set(m.tests) <= set(metrics.TESTS), m.name
        assert set(m.headline) <= set(metrics.VIEWS), m.name
        for view, tests in m.headline.items():
            assert set(tests) <= set(m.tests), (m.name, view)
        assert set(m.headline.get(metrics.TABLE, ())) <= set(m.headline.get(metrics.SUMMARY, ())), m.name
        assert m.stat is None or set(m.tests) == set(metrics.LATENCY), m.name
    for c in metrics.MODE_COLUMNS:
        assert c.metric is None or c.test in metrics.METRICS[c.metric].tests, c
    assert len({c.key for c in metrics.MODE_COLUMNS}) == len(metrics.MODE_COLUMNS)


def _records(scenario: str, src: str, dst: str, repeat: int):
    rtts = [70.0 + (i * 37 + repeat * 11) % 100 for i in range(1000)]
    for test in metrics.LATENCY:
        yield from latency.records(test, rtts, 1002, scenario, src, dst, repeat)
    for test, name in IPERF.items():
        yield from throughput.records(test, throughput.parse_iperf3((DATA / name).read_text()), scenario, src, dst,
                                      repeat)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    """A stored run with every test measured, pod-pod and host-host, both ways, two repeats."""
    run = RunDir.create(tmp_path_factory.mktemp("runs"), "catalogue")
    run.write_meta({"mode": "vxlan", "started": 0, "tools": {}, "options": {}, "inventory": {}})
    for scenario in ("pod-pod", "host-host"):
        for src, dst in (("n1", "n2"), ("n2", "n1")):
            for repeat in range(2):
                run.append(list(_records(scenario, src, dst, repeat)), "vxlan")
    run.write_table()
    return run


@pytest.mark.parametrize("test, metric", EVERY)
def test_every_metric_reaches_the_tidy_table_with_its_unit(run, test, metric):
    df = pd.read_csv(run.path / "table.csv")
    rows = df[(df.test == test) & (df.metric == metric)]
    assert len(rows) == 2 * 2 * 2 and set(rows.unit) == {metrics.unit(metric)}  # scenarios, directions, repeats


@pytest.mark.parametrize("test, metric", [(t, m) for t, m in EVERY if metrics.METRICS[m].gate])
def test_every_gateable_metric_can_be_gated(run, tmp_path, test, metric):
    path = tmp_path / "gates.yaml"
    path.write_text(f"gates:\n  - name: x\n    check: '{test}.{metric} < 1000000000'\n"
                    f"  - name: y\n    regression: {test}.{metric}\n    scenario: host-host\n")
    check, regression = gates.evaluate(gates.parse_rules(path), run.frame(), [], baseline=run.frame())
    assert check.passed is True and regression.passed is True


@pytest.mark.parametrize("test, metric", metrics.headline_pairs(metrics.COMPARE))
def test_every_compare_headline_is_compared(run, tmp_path, test, metric):
    again = tmp_path / "again"
    shutil.copytree(run.path, again)
    names, df = compare.compare([run.path, again])
    rows = df[(df.test == test) & (df.metric == metric)]
    assert len(rows) == 2  # pod-pod and host-host
    assert set(rows["again verdict"]) == {stats.SAME} and set(rows["again ratio"]) == {1.0}


@pytest.mark.parametrize("test, metric", metrics.headline_pairs(metrics.SUMMARY))
def test_every_summary_headline_is_in_the_run_summary(run, test, metric):
    rows = {(r["scenario"], r["test"]): r for r in summary.per_test(run.frame())}
    assert metric in rows[("pod-pod", test)]


@pytest.mark.parametrize("column", [c for c in metrics.MODE_COLUMNS if c.metric], ids=lambda c: c.key)
def test_every_per_mode_column_is_in_the_report_summary(run, column):
    rows = summary.per_mode(run.frame())
    assert [r["mode"] for r in rows] == ["vxlan", summary.BASELINE]
    assert all(r[column.key] is not None for r in rows)
    header = summary.markdown(rows, "t").splitlines()[2]
    assert f"| {column.label} |" in header


def test_the_run_table_shows_every_table_headline(run):
    from netbench.cli import measure as cli
    outcome = type("Outcome", (), {"run_dir": run, "mode": "vxlan", "failures": []})()
    with cli.console.capture() as captured:
        cli._print_summary(summary.per_test(run.frame()), outcome)
    text = captured.get()
    for m in metrics.columns(metrics.TABLE):
        assert m.label in text, m.name


def test_the_html_report_shows_the_heatmaps_and_the_stored_gate_verdicts(run, tmp_path):
    path = tmp_path / "gates.yaml"
    path.write_text("gates:\n  - name: p50 under a second\n    check: 'udp_rr.rtt_p50_us < 1000000'\n")
    gates.apply(run.path, gates.parse_rules(path))
    page = html.write(run.path)["html"].read_text()
    gates_section = page.split('id="gates"')[1].split("</table>")[0]
    assert "p50 under a second" in gates_section and ">pass<" in gates_section
    assert page.count('alt="pair heatmap"') == len(metrics.headline_pairs(metrics.HEATMAP))  # one mode
