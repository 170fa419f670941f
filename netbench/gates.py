"""CI gates: rules read from YAML into small parsed values, evaluated on a run's tidy table (and its
traces, and optionally a baseline run); every violation is collected, then the verdict is given once.

A rule is one of:
  check: "udp_rr.rtt_p99_us < 500"          an absolute threshold, per pair (the worst pair decides)
  check: "tcp.gbps / baseline >= 0.8"       a ratio to the host-host baseline of the same pair
  regression: tcp.gbps, tolerance_pct: 10   no worse than the baseline run by more than 10%
  reachable: true                           every measured pair answered
  path: true                                traces delivered, hops as the mode promises, MTU as promised
with optional `scenario` (default pod-pod) and `modes` (default: every mode in the run).
"""

from __future__ import annotations

import operator
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import yaml

from netbench.errors import UserError
from netbench.flannel import Mode
from netbench.plan import SCENARIOS
from netbench.strict_yaml import StrictLoader

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_RTT = ("rtt_min_us", "rtt_mean_us", "rtt_stddev_us", "rtt_p50_us", "rtt_p90_us", "rtt_p99_us", "rtt_max_us",
        "loss_pct")
_TCP = ("gbps", "retransmits", "cpu_snd_pct", "cpu_rcv_pct")
METRICS = {"udp_rr": _RTT, "icmp": _RTT, "tcp": _TCP, "tcp_multi": _TCP,
           "udp": ("gbps", "loss_pct", "jitter_ms", "cpu_snd_pct", "cpu_rcv_pct")}
HIGHER_IS_BETTER = {"gbps"}
_CHECK = re.compile(r"^\s*(?P<test>[a-z_]+)\.(?P<metric>[a-z0-9_]+)\s*(?P<base>/\s*baseline\s*)?"
                    r"(?P<op><=|>=|<|>)\s*(?P<value>-?\d+(\.\d+)?)\s*$")


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # threshold | ratio | regression | reachable | path
    line: int
    test: str | None = None
    metric: str | None = None
    op: str | None = None
    value: float | None = None
    tolerance_pct: float | None = None
    scenario: str = "pod-pod"
    modes: tuple[str, ...] = ()


@dataclass
class Outcome:
    rule: Rule
    mode: str
    passed: bool | None  # None: could not be evaluated (no data, no baseline): reported, not failed
    summary: str
    violations: list[str] = field(default_factory=list)


def _metric(test: str, metric: str, where: str) -> None:
    if test not in METRICS:
        raise UserError(f"{where}: unknown test {test!r} (known: {', '.join(METRICS)})")
    if metric not in METRICS[test]:
        raise UserError(f"{where}: test {test} has no metric {metric!r} (known: {', '.join(METRICS[test])})")


def parse_rules(path: Path) -> list[Rule]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: gate rules are not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read gate rules ({exc.strerror or exc})") from None
    try:
        root = yaml.compose(text)  # for each rule's line
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("gates"), list) or not data["gates"]:
        raise UserError(f"{path}: expected a mapping with a non-empty list `gates:`")
    gates_node = next(v for k, v in root.value if k.value == "gates")
    rules = []
    for item, node in zip(data["gates"], gates_node.value, strict=True):
        line = node.start_mark.line + 1
        where = f"{path}:{line}"
        if not isinstance(item, dict):
            raise UserError(f"{where}: a rule is a mapping (name, and one of check/regression/reachable/path)")
        known = {"name", "check", "regression", "tolerance_pct", "reachable", "path", "scenario", "modes"}
        unknown = sorted(set(item) - known)
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        name = str(item.get("name") or "")
        if not name:
            raise UserError(f"{where}: rule without a name")
        where = f"{path}:{line}: rule {name!r}"
        kinds = [k for k in ("check", "regression", "reachable", "path") if k in item]
        if len(kinds) != 1:
            raise UserError(f"{where}: needs exactly one of check, regression, reachable, path (has {kinds or 'none'})")
        scenario = item.get("scenario", "pod-pod")
        if scenario not in SCENARIOS:
            raise UserError(f"{where}: unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        modes = item.get("modes", [])
        modes = [modes] if isinstance(modes, str) else modes
        known_modes = (*(m.value for m in Mode), "mixed")
        if not isinstance(modes, list) or any(m not in known_modes for m in modes):
            raise UserError(f"{where}: modes must be a list of {', '.join(known_modes)} (got {item.get('modes')!r})")
        modes = tuple(modes)
        common = {"name": name, "line": line, "scenario": scenario, "modes": modes}
        if "check" in item:
            m = _CHECK.match(str(item["check"]))
            if not m:
                raise UserError(f"{where}: check {item['check']!r} is not 'TEST.METRIC [/ baseline] OP NUMBER', "
                                "e.g. 'udp_rr.rtt_p99_us < 500' or 'tcp.gbps / baseline >= 0.8'")
            _metric(m["test"], m["metric"], where)
            if m["base"] and scenario == "host-host":
                raise UserError(f"{where}: a ratio to the host baseline needs a pod scenario")
            rules.append(Rule(kind="ratio" if m["base"] else "threshold", test=m["test"], metric=m["metric"],
                              op=m["op"], value=float(m["value"]), **common))
        elif "regression" in item:
            test, _, metric = str(item["regression"]).partition(".")
            _metric(test, metric, where)
            tol = item.get("tolerance_pct", 10)
            if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0:
                raise UserError(f"{where}: tolerance_pct must be a number >= 0")
            rules.append(Rule(kind="regression", test=test, metric=metric, tolerance_pct=float(tol), **common))
        elif "reachable" in item:
            if item["reachable"] is not True:
                raise UserError(f"{where}: reachable takes `true`")
            rules.append(Rule(kind="reachable", **common))
        else:
            if item["path"] is not True:
                raise UserError(f"{where}: path takes `true`")
            rules.append(Rule(kind="path", **common))
    return rules


def _pairs(df: pd.DataFrame, mode: str | None, scenario: str, test: str, metric: str) -> pd.Series:
    """Median over repeats, per (src, dst); over every mode when mode is None."""
    sel = df[((df["mode"] == mode) if mode else True) & (df.scenario == scenario) & (df.test == test)
             & (df.metric == metric)]
    return sel.groupby(["src", "dst"]).value.median()


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def evaluate(rules: list[Rule], df: pd.DataFrame, traces: list[dict],
             baseline: pd.DataFrame | None = None) -> list[Outcome]:
    outcomes = []
    run_modes = sorted(df["mode"].unique()) if not df.empty else []
    for rule in rules:
        modes = [m for m in run_modes if not rule.modes or m in rule.modes]
        if not modes:
            outcomes.append(Outcome(rule, "-", None, f"applies to {', '.join(rule.modes) or 'any mode'}; "
                                                     f"the run measured {', '.join(run_modes) or 'nothing'}"))
        for mode in modes:
            outcomes.append(_one(rule, mode, df, traces, baseline))
    return outcomes


def apply(run_dir, rules_path: Path, baseline_dir=None, junit_path: Path | None = None) -> list[Outcome]:
    """Read the rules and the run (and baseline), evaluate, write JUnit; the caller decides the exit."""
    from netbench.results import RunDir
    rules = parse_rules(rules_path)
    run = RunDir.open(run_dir)
    base = RunDir.open(baseline_dir).frame() if baseline_dir else None
    outcomes = evaluate(rules, run.frame(), run.traces(), base)
    (junit_path or run.path / "gates.xml").write_text(junit(outcomes, run.run_id))
    return outcomes


def _one(rule: Rule, mode: str, df: pd.DataFrame, traces: list[dict], baseline: pd.DataFrame | None) -> Outcome:
    label = f"{mode} {rule.scenario}"
    if rule.kind in ("threshold", "ratio"):
        values = _pairs(df, mode, rule.scenario, rule.test, rule.metric)
        if values.empty:
            return Outcome(rule, mode, None, f"{label}: no {rule.test}.{rule.metric} measured")
        if rule.kind == "ratio":
            base = _pairs(df, mode, "host-host", rule.test, rule.metric)
            if base.empty:  # a run over several modes measures the host baseline in one pass only
                base = _pairs(df, None, "host-host", rule.test, rule.metric)
            ratios = {}
            for (src, dst), v in values.items():
                b = base.get((src, dst), base.get((dst, src)))
                if b:
                    ratios[(src, dst)] = v / b
            if not ratios:
                return Outcome(rule, mode, None, f"{label}: no host-host baseline measured for these pairs")
            values = pd.Series(ratios)
        fn = OPS[rule.op]
        bad = [f"{src}->{dst}: {_fmt(v)} (needs {rule.op} {_fmt(rule.value)})" for (src, dst), v in values.items()
               if not fn(v, rule.value)]
        worst = values.min() if rule.op in (">", ">=") else values.max()
        what = f"{rule.test}.{rule.metric}" + (" / baseline" if rule.kind == "ratio" else "")
        return Outcome(rule, mode, not bad, f"{label}: worst {what} = {_fmt(worst)} over {len(values)} pairs", bad)
    if rule.kind == "regression":
        if baseline is None:
            return Outcome(rule, mode, None, f"{label}: no baseline run given (--baseline RUN)")
        now = _pairs(df, mode, rule.scenario, rule.test, rule.metric)
        then = _pairs(baseline, mode, rule.scenario, rule.test, rule.metric)
        if now.empty or then.empty:
            return Outcome(rule, mode, None, f"{label}: {rule.test}.{rule.metric} not in both runs")
        cur, base = float(now.median()), float(then.median())
        if base == 0:  # e.g. loss 0% before: any loss now is infinitely worse, none is not worse
            higher = rule.metric in HIGHER_IS_BETTER
            worse = 0.0 if (higher or cur <= 0) else float("inf")
        else:
            worse = (base - cur) / base * 100 if rule.metric in HIGHER_IS_BETTER else (cur - base) / base * 100
        msg = f"{label}: {rule.test}.{rule.metric} median {_fmt(cur)} vs baseline {_fmt(base)} ({worse:+.1f}% worse)"
        bad = [msg] if worse > rule.tolerance_pct else []
        return Outcome(rule, mode, not bad, msg + f", tolerance {rule.tolerance_pct:g}%", bad)
    if rule.kind == "reachable":
        reach = df[(df["mode"] == mode) & (df.scenario == rule.scenario) & (df.metric == "reachable")]
        if reach.empty:
            return Outcome(rule, mode, None, f"{label}: no latency test measured reachability")
        worst = reach.groupby(["src", "dst"]).value.min()
        bad = [f"{src}->{dst}: unreachable" for (src, dst), v in worst.items() if v < 1]
        return Outcome(rule, mode, not bad, f"{label}: {len(worst) - len(bad)} of {len(worst)} pairs reachable", bad)
    # path
    mine = [t for t in traces if t.get("run_mode", t.get("mode")) == mode]
    if not mine:
        return Outcome(rule, mode, None, f"{mode}: no traces in the run (netbench run --trace)")
    bad = []
    for t in mine:
        pair = f"{t['src']}->{t['dst']}"
        failing = [v for v in t["verdicts"] if not v["ok"]]
        bad += [f"{pair}: {v['kind']} at {v.get('hop')}: {v['message']}" for v in failing]
        bad += [f"{pair}: {d}" for d in t.get("differences", [])]
        mtu = t.get("path_mtu") or {}
        if mtu.get("expected_mtu") and mtu.get("largest_delivered") != mtu["expected_mtu"]:
            bad.append(f"{pair}: path MTU {mtu.get('largest_delivered')} != expected {mtu['expected_mtu']}")
    return Outcome(rule, mode, not bad, f"{mode}: {len(mine)} traces, {len(bad)} problems", bad)


def junit(outcomes: list[Outcome], run_id: str) -> str:
    """JUnit XML as CI systems read it (Jenkins, GitLab, GitHub reporters): one testcase per rule and mode;
    a violated rule is a <failure>, one that could not be evaluated is <skipped>."""
    failures = sum(o.passed is False for o in outcomes)
    skipped = sum(o.passed is None for o in outcomes)
    suites = ET.Element("testsuites", name="netbench gates", tests=str(len(outcomes)), failures=str(failures),
                        errors="0", skipped=str(skipped), time="0")
    suite = ET.SubElement(suites, "testsuite", name=f"netbench gates {run_id}", tests=str(len(outcomes)),
                          failures=str(failures), errors="0", skipped=str(skipped), time="0",
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=f"netbench.gates.{o.mode}",
                             name=f"{o.rule.name} [{o.mode} {o.rule.scenario}]", time="0")
        if o.passed is False:
            fail = ET.SubElement(case, "failure", message=o.summary, type=o.rule.kind)
            fail.text = "\n".join(o.violations)
        elif o.passed is None:
            ET.SubElement(case, "skipped", message=o.summary)
        out = ET.SubElement(case, "system-out")
        out.text = o.summary
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
