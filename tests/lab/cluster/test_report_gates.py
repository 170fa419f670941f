"""Reports and gates on real lab runs: one run over every mode (the lab switches between passes), where
every rule kind passes for a healthy mode and fails for worse ones (the udp overlay, a cluster without
routes), and a throttled run judged against it; the report compares the modes and renders in Chromium."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import xmlschema

from netbench.flannel import Mode
from netbench.lab.faults import Fault

QUICK = ["--pairs", "n1:n2", "--samples", "100", "--interval", "0.002", "--duration", "1", "--repeats", "2"]
SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parents[2] / "data" / "junit.xsd"))
RULES = """gates:
  - name: pod tcp at least 1 Gbit/s
    check: "tcp.gbps >= 1"
  - name: pod tcp at least half the host baseline
    check: "tcp.gbps / baseline >= 0.5"
  - name: no tcp regression beyond 20%
    regression: tcp.gbps
    tolerance_pct: 20
  - name: every pod pair reachable
    reachable: true
  - name: paths as promised
    path: true
"""


def netbench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=timeout)


def run(out: Path, *extra) -> Path:
    proc = netbench("run", *QUICK, "--out", str(out), "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return Path(json.loads(proc.stdout)["run_dir"])


MODES = ["host-gw", "udp", "vxlan", "static", "frr", "none"]  # host-gw first: it measures the host baseline


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    rules = out / "rules.yaml"
    rules.write_text(RULES)
    # one run over every mode (the lab switches between passes), then a throttled host-gw run to judge
    # regressions against it
    modes = run(out, "--modes", ",".join(MODES), "--scenarios", "pod-pod,host-host", "--repeats", "1",
                "--tests", "udp_rr,tcp", "--trace", "--gates", str(rules))
    if lab.mode is not Mode.host_gw:
        lab.set_mode(Mode.host_gw)
    for node in ("n1", "n2"):
        lab.add_fault(Fault("rate", node, rate="200mbit"))
    try:
        throttled = run(out, "--tests", "udp_rr,tcp", "--scenarios", "pod-pod")
    finally:
        lab.clear_faults()
    return {"rules": rules, "modes": modes, "throttled": throttled}


def gate(runs, name, baseline=None):
    """Exit code, and each rule's verdict per mode: {(rule, mode): pass | fail | n/a}."""
    junit = runs[name] / f"gates-test-{baseline}.xml"
    args = ["gate", str(runs[name]), "--rules", str(runs["rules"]), "--junit", str(junit)]
    if baseline:
        args += ["--baseline", str(runs[baseline])]
    proc = netbench(*args)
    SCHEMA.validate(str(junit))
    cases = {}
    for case in SCHEMA.to_dict(str(junit))["testsuite"][0]["testcase"]:
        state = "fail" if "failure" in case else ("n/a" if "skipped" in case else "pass")
        rule, _, where = case["@name"].rpartition(" [")
        cases[(rule, where.split(" ")[0])] = state
    return proc.returncode, cases


def test_a_run_over_every_mode_measures_each_one_as_it_is(runs):
    meta = json.loads((runs["modes"] / "run.json").read_text())
    assert [p["mode"] for p in meta["passes"]] == MODES
    for p in meta["passes"]:  # the nodes really ran the mode each pass was labelled with
        assert {d["mode"] for d in p["detected"].values()} == {p["mode"]}, p
    df = pd.read_csv(runs["modes"] / "table.csv")
    tcp = df[(df.scenario == "pod-pod") & (df.test == "tcp") & (df.metric == "gbps")]
    assert set(tcp["mode"]) == set(MODES) - {"none"}
    assert set(df[df.scenario == "host-host"]["mode"]) == {"host-gw"}  # the baseline, measured once
    medians = tcp.groupby("mode").value.median()
    assert medians["udp"] < 0.5 * min(medians[m] for m in ("vxlan", "host-gw", "static", "frr"))
    traces = json.loads((runs["modes"] / "traces.json").read_text())
    assert sorted(t["mode"] for t in traces) == sorted(MODES)
    assert all(t["leases_checked"] for t in traces)  # each pass's leases reached its traces' checks


def test_every_rule_kind_passes_for_a_healthy_mode(runs):
    _, cases = gate(runs, "modes", baseline="modes")
    host_gw = {rule: state for (rule, mode), state in cases.items() if mode == "host-gw"}
    assert set(host_gw.values()) == {"pass"} and len(host_gw) == 5, host_gw
    assert (runs["modes"] / "gates.xml").exists()  # `run --gates` applied them already


def test_throttling_fails_the_threshold_and_the_regression(runs):
    code, cases = gate(runs, "throttled", baseline="modes")
    assert code == 1
    assert cases[("pod tcp at least 1 Gbit/s", "host-gw")] == "fail"
    assert cases[("no tcp regression beyond 20%", "host-gw")] == "fail"
    assert cases[("every pod pair reachable", "host-gw")] == "pass"


def test_the_udp_overlay_fails_the_ratio_to_the_host_baseline(runs):
    code, cases = gate(runs, "modes")
    assert code == 1 and cases[("pod tcp at least half the host baseline", "udp")] == "fail"
    assert cases[("pod tcp at least half the host baseline", "static")] == "pass"  # the same baseline
    assert cases[("no tcp regression beyond 20%", "udp")] == "n/a"  # no baseline given


def test_a_cluster_without_routes_fails_reachability_and_paths(runs):
    _, cases = gate(runs, "modes")
    assert cases[("every pod pair reachable", "none")] == "fail"
    assert cases[("paths as promised", "none")] == "fail"
    assert cases[("paths as promised", "frr")] == "pass"


def test_unreadable_rules_or_run_exit_2(runs, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - name: x\n    check: 'tcp.gbs > 1'\n")
    proc = netbench("gate", str(runs["modes"]), "--rules", str(bad))
    assert proc.returncode == 2 and f"{bad}:2" in proc.stderr and "no metric 'gbs'" in proc.stderr
    proc = netbench("gate", str(tmp_path), "--rules", str(runs["rules"]))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_compare_marks_the_throttled_run_worse(runs):
    proc = netbench("compare", str(runs["modes"]), str(runs["throttled"]))
    assert proc.returncode == 1
    line = next(ln for ln in proc.stdout.splitlines() if "host-gw" in ln and "pod-pod" in ln and "tcp" in ln
                and "gbps" in ln)
    assert "worse" in line


def test_report_renders_in_chromium_with_charts_and_no_console_errors(runs, tmp_path):
    proc = netbench("report", str(runs["modes"]))
    assert proc.returncode == 0, proc.stderr
    html = (runs["modes"] / "index.html").read_text()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)) >= 5  # charts embedded
    assert not re.search(r'(src|href)="https?://', html)  # opens with no network
    for section in ("Summary per mode", "Throughput per mode", "Latency distribution", "Traces", "Nodes", "Gates"):
        assert section in html
    assert (runs["modes"] / "summary.md").read_text().startswith("### netbench")
    side_by_side = html.split('id="summary"')[1].split("</table>")[0]
    for mode in MODES + ["host (baseline)"]:  # every mode side by side, with the host baseline
        assert f">{mode}<" in side_by_side, mode
    published = html.split("Published reference figures")[1]
    assert "InfraBuilder" in published and "InfraBuilder" not in side_by_side
    shot = tmp_path / "report.png"
    browser = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
         "--window-size=1200,2400", f"--screenshot={shot}", f"file://{runs['modes'] / 'index.html'}"],
        capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000, browser.stderr[-1500:]
    console = [ln for ln in browser.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    from matplotlib import image
    pixels = image.imread(str(shot))
    assert pixels.std() > 0.05  # not a blank page: charts and tables drew
