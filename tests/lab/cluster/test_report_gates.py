"""Reports and gates on real lab runs: every rule kind passes on a healthy run and fails on one made
worse (throttled links, the udp overlay, a cluster without routes); the report renders in Chromium."""

import json
import re
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    rules = out / "rules.yaml"
    rules.write_text(RULES)
    if lab.mode is not Mode.host_gw:
        lab.set_mode(Mode.host_gw)
    healthy = run(out, "--tests", "udp_rr,tcp", "--trace", "--gates", str(rules))
    for node in ("n1", "n2"):
        lab.add_fault(Fault("rate", node, rate="200mbit"))
    try:
        throttled = run(out, "--tests", "udp_rr,tcp")
    finally:
        lab.clear_faults()
    lab.set_mode(Mode.udp)
    overlay = run(out, "--tests", "udp_rr,tcp")
    lab.set_mode(Mode.none)
    broken = run(out, "--tests", "udp_rr", "--trace")
    lab.set_mode(Mode.host_gw)
    return {"rules": rules, "healthy": healthy, "throttled": throttled, "overlay": overlay, "broken": broken}


def gate(runs, name, baseline=None):
    junit = runs[name] / "gates-test.xml"
    args = ["gate", str(runs[name]), "--rules", str(runs["rules"]), "--junit", str(junit)]
    if baseline:
        args += ["--baseline", str(runs[baseline])]
    proc = netbench(*args)
    SCHEMA.validate(str(junit))
    cases = {}
    for case in SCHEMA.to_dict(str(junit))["testsuite"][0]["testcase"]:
        state = "fail" if "failure" in case else ("n/a" if "skipped" in case else "pass")
        cases[case["@name"].split(" [")[0]] = state
    return proc.returncode, cases


def test_every_rule_kind_passes_on_a_healthy_run(runs):
    code, cases = gate(runs, "healthy", baseline="healthy")
    assert code == 0 and set(cases.values()) == {"pass"} and len(cases) == 5, cases
    assert (runs["healthy"] / "gates.xml").exists()  # `run --gates` applied them already


def test_throttling_fails_the_threshold_and_the_regression(runs):
    code, cases = gate(runs, "throttled", baseline="healthy")
    assert code == 1
    assert cases["pod tcp at least 1 Gbit/s"] == "fail"
    assert cases["no tcp regression beyond 20%"] == "fail"
    assert cases["every pod pair reachable"] == "pass"


def test_the_udp_overlay_fails_the_ratio_to_the_host_baseline(runs):
    code, cases = gate(runs, "overlay")
    assert code == 1 and cases["pod tcp at least half the host baseline"] == "fail"
    assert cases["no tcp regression beyond 20%"] == "n/a"  # no baseline given


def test_a_cluster_without_routes_fails_reachability_and_paths(runs):
    code, cases = gate(runs, "broken")
    assert code == 1
    assert cases["every pod pair reachable"] == "fail" and cases["paths as promised"] == "fail"


def test_unreadable_rules_or_run_exit_2(runs, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - name: x\n    check: 'tcp.gbs > 1'\n")
    proc = netbench("gate", str(runs["healthy"]), "--rules", str(bad))
    assert proc.returncode == 2 and f"{bad}:2" in proc.stderr and "no metric 'gbs'" in proc.stderr
    proc = netbench("gate", str(tmp_path), "--rules", str(runs["rules"]))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_compare_marks_the_throttled_run_worse(runs):
    proc = netbench("compare", str(runs["healthy"]), str(runs["throttled"]))
    assert proc.returncode == 1
    line = next(ln for ln in proc.stdout.splitlines() if "pod-pod" in ln and "tcp" in ln and "gbps" in ln)
    assert "worse" in line


def test_report_renders_in_chromium_with_charts_and_no_console_errors(runs, tmp_path):
    proc = netbench("report", str(runs["healthy"]))
    assert proc.returncode == 0, proc.stderr
    html = (runs["healthy"] / "index.html").read_text()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)) >= 5  # charts embedded
    assert not re.search(r'(src|href)="https?://', html)  # opens with no network
    for section in ("Summary per mode", "Throughput per mode", "Latency distribution", "Traces", "Nodes", "Gates"):
        assert section in html
    assert (runs["healthy"] / "summary.md").read_text().startswith("### netbench")
    shot = tmp_path / "report.png"
    browser = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
         "--window-size=1200,2400", f"--screenshot={shot}", f"file://{runs['healthy'] / 'index.html'}"],
        capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000, browser.stderr[-1500:]
    console = [ln for ln in browser.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    from matplotlib import image
    pixels = image.imread(str(shot))
    assert pixels.std() > 0.05  # not a blank page: charts and tables drew
