"""Gate rules: parsing and its errors, evaluation on a tidy table, JUnit output."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import xmlschema

from netbench import gates, metrics
from netbench.errors import UserError
from netbench.results import COLUMNS

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parents[1] / "data" / "junit.xsd"))


def rules_file(tmp_path, text):
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    return path


def test_the_documented_example_parses():
    rules = gates.parse_rules(Path(__file__).parents[2] / "configs" / "gates.yaml")
    assert {r.kind for r in rules} == {"threshold", "ratio", "regression", "reachable", "path"}


@pytest.mark.parametrize("text, expected", [
    ("gates:\n  - name: a\n    check: 'udp_rr.rtt_p99 < 5'\n",
     "gates.yaml:2: rule 'a': test udp_rr has no metric 'rtt_p99'"),
    ("gates:\n  - name: a\n    check: 'tcp.gbps is big'\n", "gates.yaml:2: rule 'a': check 'tcp.gbps is big' is not"),
    ("gates:\n  - name: ok\n    reachable: true\n  - name: b\n    regression: tpc.gbps\n",
     "gates.yaml:4: rule 'b': unknown test 'tpc'"),
    ("gates:\n  - name: a\n    reachable: true\n    path: true\n", "needs exactly one of"),
    ("gates:\n  - name: a\n    reachable: true\n    scenario: pod-host\n", "unknown scenario 'pod-host'"),
    ("gates:\n  - name: a\n    reachable: true\n    modez: [udp]\n", "gates.yaml:2: unknown key 'modez'"),
    ("gates:\n  - name: a\n   check: x\n", "gates.yaml:3: invalid YAML"),
    ("rules: []\n", "non-empty list `gates:`"),
    ("gates:\n  - name: a\n    reachable: true\ngates:\n  - name: b\n    path: true\n",
     "gates.yaml:4: invalid YAML: duplicate key 'gates'"),
    ("gates:\n  - name: a\n    reachable: true\n    name: b\n", "gates.yaml:4: invalid YAML: duplicate key 'name'"),
])
def test_bad_rules_are_reported_with_file_and_line(tmp_path, text, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        gates.parse_rules(rules_file(tmp_path, text))


def frame(rows):
    return pd.DataFrame([dict(run="r", unit="", repeat=0, time=0, **r) for r in rows], columns=COLUMNS)


def rec(mode, scenario, src, dst, test, metric, value):
    return {"mode": mode, "scenario": scenario, "src": src, "dst": dst, "test": test, "metric": metric, "value": value}


RUN = frame([
    rec("vxlan", "pod-pod", "a", "b", "udp_rr", "rtt_p99_us", 120), rec("vxlan", "pod-pod", "a", "c", "udp_rr",
                                                                          "rtt_p99_us", 700),
    rec("vxlan", "pod-pod", "a", "b", "udp_rr", "reachable", 1), rec("vxlan", "pod-pod", "a", "c", "udp_rr",
                                                                       "reachable", 0),
    rec("vxlan", "pod-pod", "a", "b", "tcp", "gbps", 8.0), rec("vxlan", "host-host", "b", "a", "tcp", "gbps", 10.0),
])


def test_threshold_fails_on_the_worst_pair_and_names_it(tmp_path):
    (rule,) = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: p99\n    check: 'udp_rr.rtt_p99_us < 500'\n"))
    (o,) = gates.evaluate([rule], RUN, [])
    assert o.passed is False and o.violations == ["a->c: 700 (needs < 500)"] and "worst" in o.summary


def test_ratio_uses_the_same_pairs_host_baseline_either_way(tmp_path):
    path = rules_file(tmp_path, "gates:\n  - name: r\n    check: 'tcp.gbps / baseline >= 0.8'\n"
                                "  - name: r2\n    check: 'tcp.gbps / baseline >= 0.9'\n")
    ok, bad = gates.evaluate(gates.parse_rules(path), RUN, [])
    assert ok.passed is True and bad.passed is False and "0.8" in bad.violations[0]


def test_regression_knows_which_way_is_better(tmp_path):
    path = rules_file(tmp_path, "gates:\n  - name: t\n    regression: tcp.gbps\n    tolerance_pct: 10\n"
                                "  - name: l\n    regression: udp_rr.rtt_p99_us\n    tolerance_pct: 10\n")
    rules = gates.parse_rules(path)
    slower = RUN.assign(value=RUN.value * 0.8)  # 20% less throughput, but 20% lower RTT
    tcp, rtt = gates.evaluate(rules, slower, [], baseline=RUN)
    assert tcp.passed is False and "20.0% worse" in tcp.summary
    assert rtt.passed is True
    assert all(o.passed is None for o in gates.evaluate(rules, RUN, []))  # no baseline: n/a, not pass


def test_reachability_and_paths(tmp_path):
    path = rules_file(tmp_path, "gates:\n  - name: reach\n    reachable: true\n  - name: path\n    path: true\n")
    reach, path_o = gates.evaluate(gates.parse_rules(path), RUN, [
        {"mode": "vxlan", "src": "a", "dst": "b", "differences": [], "path_mtu": {"expected_mtu": 1450,
         "largest_delivered": 1450}, "verdicts": [{"kind": "delivered", "ok": True, "message": ""}]},
        {"mode": "vxlan", "src": "a", "dst": "c", "differences": ["expected hop c:eth0:in saw no probe"],
         "path_mtu": {}, "verdicts": [{"kind": "encap-blocked", "ok": False, "hop": "c:eth0:in", "message": "x"}]},
    ])
    assert reach.passed is False and reach.violations == ["a->c: unreachable"]
    assert path_o.passed is False and len(path_o.violations) == 2


def test_junit_is_valid_for_ci_readers(tmp_path):
    rules = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: p99 <&> \"quoted\"\n    check: "
                                                   "'udp_rr.rtt_p99_us < 500'\n  - name: reach\n    reachable: true\n"
                                                   "  - name: reg\n    regression: tcp.gbps\n"))
    xml = gates.junit(gates.evaluate(rules, RUN, []), "run-1")
    SCHEMA.validate(xml)
    doc = SCHEMA.to_dict(xml)
    suite = doc["testsuite"][0]
    assert (suite["@tests"], suite["@failures"], suite["@skipped"]) == (3, 2, 1)
    assert not SCHEMA.is_valid(xml.replace(' classname="netbench.gates.vxlan"', "", 1))  # the schema has teeth


def test_modes_are_validated_and_a_zero_baseline_still_catches_regressions(tmp_path):
    with pytest.raises(UserError, match="modes must be a list"):
        gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: a\n    reachable: true\n    modes: [host_gw]\n"))
    with pytest.raises(UserError, match="modes must be a list"):
        gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: a\n    reachable: true\n    modes: 5\n"))
    (rule,) = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: l\n    regression: udp_rr.loss_pct\n"))
    before = frame([rec("vxlan", "pod-pod", "a", "b", "udp_rr", "loss_pct", 0.0)])
    after = frame([rec("vxlan", "pod-pod", "a", "b", "udp_rr", "loss_pct", 50.0)])
    (o,) = gates.evaluate([rule], after, [], baseline=before)
    assert o.passed is False
    (o,) = gates.evaluate([rule], before, [], baseline=before)
    assert o.passed is True


def test_a_mode_without_its_own_host_pass_is_judged_against_the_runs_host_baseline(tmp_path):
    # a run over several modes measures host-host in its first pass only
    rows = [("udp", "host-host", "tcp", 10.0), ("udp", "pod-pod", "tcp", 1.0), ("vxlan", "pod-pod", "tcp", 9.0)]
    df = pd.DataFrame([{"run": "r", "mode": m, "scenario": sc, "src": "n1", "dst": "n2", "test": t,
                        "metric": "gbps", "value": v, "unit": "Gbit/s", "repeat": 0, "time": 0}
                       for m, sc, t, v in rows], columns=COLUMNS)
    rules = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: r\n    check: 'tcp.gbps / baseline >= 0.8'\n"))
    verdicts = {o.mode: o.passed for o in gates.evaluate(rules, df, [])}
    assert verdicts == {"udp": False, "vxlan": True}


def test_rules_that_are_not_utf8_are_a_user_error(tmp_path):
    path = tmp_path / "gates.yaml"
    path.write_bytes(b"gates:\n  - name: \xff\n")
    with pytest.raises(UserError, match="not UTF-8"):
        gates.parse_rules(path)


def test_every_bad_rule_is_reported_at_once_each_with_file_line_and_field(tmp_path):
    path = rules_file(tmp_path, "gates:\n"
                                "  - name: a\n    check: 'udp_rr.rtt_p99 < 5'\n"  # line 2
                                "  - name: ok\n    reachable: true\n"  # line 4: fine
                                "  - name: b\n    regression: tcp.gbps\n    tolerance_pct: -1\n    scenario: x\n"  # 6
                                "  - reachable: true\n    modez: [udp]\n")  # line 10
    with pytest.raises(gates.GateRulesError) as caught:
        gates.parse_rules(path)
    known = metrics.gateable("udp_rr")
    assert known[:3] == ["rtt_min_us", "rtt_mean_us", "rtt_stddev_us"] and "reachable" not in known
    assert caught.value.problems == [
        f"{path}:2: rule 'a': test udp_rr has no metric 'rtt_p99' in check (known: {', '.join(known)})",
        f"{path}:6: rule 'b': unknown scenario 'x' (known: pod-pod, pod-pod-same-node, host-host)",
        f"{path}:6: rule 'b': tolerance_pct must be a finite number >= 0 (got -1)",
        f"{path}:10: unknown key 'modez' (known: check, modes, name, path, reachable, regression, scenario, "
        "size, tolerance_pct)",
        f"{path}:10: rule without a name",
    ]
    assert isinstance(caught.value, UserError) and str(caught.value).count("\n") == 4


def run_dir(tmp_path):
    from netbench.results import RunDir
    run = RunDir.create(tmp_path, "t")
    run.write_meta({"mode": "vxlan"})
    with open(run.records_file, "w") as f:
        for row in RUN.to_dict("records"):
            f.write(json.dumps(row) + "\n")
    return run


def test_apply_keeps_the_runs_verdicts_as_data_beside_its_junit(tmp_path):
    run = run_dir(tmp_path)
    rules = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: p99\n    check: 'udp_rr.rtt_p99_us < 500'\n"
                                                   "  - name: reg\n    regression: tcp.gbps\n"))
    elsewhere = tmp_path / "ci.xml"
    gates.apply(run.path, rules, junit_path=elsewhere)
    assert elsewhere.exists() and run.gates() == []  # another JUnit file is not the run's own verdict
    outcomes = gates.apply(run.path, rules)
    assert (run.path / "gates.xml").exists()
    assert run.gates() == [o.as_dict() for o in outcomes]
    assert [(g["name"], g["mode"], g["passed"]) for g in run.gates()] == [("p99", "vxlan", False),
                                                                          ("reg", "vxlan", None)]


@pytest.mark.parametrize("field, expected", [
    ("tolerance_pct: .nan", "rule 'r': tolerance_pct must be a finite number >= 0 (got nan)"),
    ("tolerance_pct: .inf", "rule 'r': tolerance_pct must be a finite number >= 0 (got inf)"),
    ("tolerance_pct: -.inf", "rule 'r': tolerance_pct must be a finite number >= 0 (got -inf)"),
])
def test_nan_and_infinite_tolerances_are_refused_naming_rule_and_field(tmp_path, field, expected):
    path = rules_file(tmp_path, f"gates:\n  - name: r\n    regression: tcp.gbps\n    {field}\n")
    with pytest.raises(UserError, match=re.escape(f"{path}:2: {expected}")):
        gates.parse_rules(path)


def test_a_threshold_too_large_to_be_a_number_is_refused(tmp_path):
    path = rules_file(tmp_path, f"gates:\n  - name: big\n    check: 'tcp.gbps < {'9' * 400}'\n")
    with pytest.raises(UserError, match=re.escape(f"{path}:2: rule 'big': check ") + ".*must be a finite number"):
        gates.parse_rules(path)

