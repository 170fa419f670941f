"""CI gates: rules read from YAML into small parsed values, evaluated on a run's tidy table (and its
traces, and optionally a baseline run); every violation is collected, then the verdict is given once.

A rule is one of:
  check: "udp_rr.rtt_p99_us < 500"          an absolute threshold, per pair (the worst pair decides)
  check: "tcp.gbps / baseline >= 0.8"       a ratio to the host-host baseline of the same pair
  regression: tcp.gbps, tolerance_pct: 10   no worse than the baseline run by more than 10%, and the
                                            difference significant (netbench.stats.difference, as compare)
  reachable: true                           every planned pair measured and answered
  path: true                                traces delivered, hops as the mode promises, MTU as promised
with optional `scenario` (default pod-pod) and `modes` (default: every mode in the run); a check or a
regression of udp_rr or tcp, or a reachable rule, may name a `size` of the run's size sweep (run --sizes:
udp_rr's payload, tcp's MSS), and then judges what was measured at that size, not the test's own.

A rule fails on every measurement it judges that the run planned and did not make ("not measured: …",
see gaps.py): a pair skipped because its node was down is not a pass.
"""

from __future__ import annotations

import math
import operator
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import yaml

from netbench import gaps, metrics, stats
from netbench.errors import UserError
from netbench.flannel import Mode
from netbench.plan import LATENCY_TESTS, SCENARIOS, SIZE_TESTS
from netbench.runoptions import MIN_SIZE, TCP_MIN_MSS
from netbench.strict_yaml import StrictLoader

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_CHECK = re.compile(r"^\s*(?P<test>[a-z_]+)\.(?P<metric>[a-z0-9_]+)\s*(?P<base>/\s*baseline\s*)?"
                    r"(?P<op><=|>=|<|>)\s*(?P<value>-?\d+(\.\d+)?)\s*$")
_KEYS = ("name", "check", "regression", "tolerance_pct", "reachable", "path", "scenario", "modes", "size")
_KINDS = ("check", "regression", "reachable", "path")


class GateRulesError(UserError):
    """Gate rules that cannot be used; `problems` holds one line per problem, each naming file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


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
    size: int | None = None  # a message size of the size sweep; None: the test's own figures

    @property
    def where(self) -> str:
        """What the rule judges besides the mode: "pod-pod", "pod-pod size 512"."""
        return self.scenario + (f" size {self.size}" if self.size is not None else "")


@dataclass
class Outcome:
    rule: Rule
    mode: str
    passed: bool | None  # None: could not be evaluated (no data, no baseline): reported, not failed
    summary: str
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The verdict as data (gates.json): what the report shows, without reading the JUnit back."""
        return {"name": self.rule.name, "kind": self.rule.kind, "mode": self.mode, "scenario": self.rule.scenario,
                **({"size": self.rule.size} if self.rule.size is not None else {}),
                "passed": self.passed, "summary": self.summary, "violations": list(self.violations)}


def _metric(test: str, metric: str, key: str) -> str | None:
    """Why test.metric (given in `key`) is not something a gate can judge, or None."""
    if test not in metrics.TESTS:
        return f"unknown test {test!r} in {key} (known: {', '.join(metrics.TESTS)})"
    known = metrics.gateable(test)
    if metric not in known:
        return f"test {test} has no metric {metric!r} in {key} (known: {', '.join(known)})"
    return None


def _read(path: Path) -> tuple[object, yaml.Node | None]:
    """The rules file as data and as its YAML node (for each rule's line), parsed once."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GateRulesError([f"{path}: gate rules are not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise GateRulesError([f"{path}: cannot read gate rules ({exc.strerror or exc})"]) from None
    loader = StrictLoader(text)
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), root
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GateRulesError([f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    finally:
        loader.dispose()


def parse_rules(path: Path) -> list[Rule]:
    """Read and check gate rules; raises GateRulesError (a UserError) listing every problem of every rule."""
    data, root = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get("gates"), list) or not data["gates"]:
        raise GateRulesError([f"{path}: expected a mapping with a non-empty list `gates:`"])
    gates_node = next(v for k, v in root.value if k.value == "gates")
    rules, problems = [], []
    for item, node in zip(data["gates"], gates_node.value, strict=True):
        rule, wrong = _rule(item, node.start_mark.line + 1, path)
        problems += wrong
        if rule:
            rules.append(rule)
    if problems:
        raise GateRulesError(problems)
    return rules


def _rule(item: object, line: int, path: Path) -> tuple[Rule | None, list[str]]:
    """One rule, or every reason it is not one (each prefixed with file, line and rule name)."""
    where = f"{path}:{line}"
    if not isinstance(item, dict):
        return None, [f"{where}: a rule is a mapping (name, and one of check/regression/reachable/path)"]
    known = ", ".join(sorted(_KEYS))
    problems = [f"{where}: unknown key {k!r} (known: {known})" for k in sorted(set(item) - set(_KEYS), key=str)]
    name = str(item.get("name") or "")
    if not name:
        problems.append(f"{where}: rule without a name")
    else:
        where = f"{path}:{line}: rule {name!r}"
    wrong: list[str] = []
    kinds = [k for k in _KINDS if k in item]
    if len(kinds) != 1:
        wrong.append(f"needs exactly one of check, regression, reachable, path (has {kinds or 'none'})")
    scenario = item.get("scenario", "pod-pod")
    if scenario not in SCENARIOS:
        wrong.append(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    modes = item.get("modes", [])
    modes = [modes] if isinstance(modes, str) else modes
    known_modes = (*(m.value for m in Mode), "mixed")
    if not isinstance(modes, list) or any(m not in known_modes for m in modes):
        wrong.append(f"modes must be a list of {', '.join(known_modes)} (got {item.get('modes')!r})")
        modes = []
    common = {"name": name, "line": line, "scenario": scenario, "modes": tuple(modes), "size": item.get("size")}
    rule = None
    if len(kinds) == 1:
        rule = _kind(kinds[0], item, common, wrong)
    if rule and rule.size is not None:
        wrong += _size(rule)
    problems += [f"{where}: {w}" for w in wrong]
    return (None if problems else rule), problems


def _size(rule: Rule) -> list[str]:
    """Why a rule's `size` cannot name a size of the sweep (run --sizes), or nothing."""
    size = rule.size
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= 65000:
        return [f"size must be a message size in whole bytes, {MIN_SIZE} to 65000 (got {size!r})"]
    if rule.kind == "path":
        return ["size applies to check, regression and reachable rules"]
    if rule.kind != "reachable" and rule.test not in SIZE_TESTS:
        return [f"size: the size sweep measures {' and '.join(SIZE_TESTS)}, not {rule.test}"]
    if rule.test == "tcp" and size < TCP_MIN_MSS:
        return [f"size: tcp is swept from an MSS of {TCP_MIN_MSS} bytes (got {size})"]
    return []


def _kind(kind: str, item: dict, common: dict, wrong: list[str]) -> Rule | None:
    """The rule of one kind, appending to `wrong` what is wrong with its fields."""
    if kind == "check":
        m = _CHECK.match(str(item["check"]))
        if not m:
            wrong.append(f"check {item['check']!r} is not 'TEST.METRIC [/ baseline] OP NUMBER', "
                         "e.g. 'udp_rr.rtt_p99_us < 500' or 'tcp.gbps / baseline >= 0.8'")
            return None
        bad = _metric(m["test"], m["metric"], "check")
        if bad:
            wrong.append(bad)
        if m["base"] and common["scenario"] == "host-host":
            wrong.append("a ratio to the host baseline needs a pod scenario")
        if not math.isfinite(float(m["value"])):
            wrong.append(f"check {item['check']!r}: the threshold must be a finite number")
        return Rule(kind="ratio" if m["base"] else "threshold", test=m["test"], metric=m["metric"], op=m["op"],
                    value=float(m["value"]), **common)
    if kind == "regression":
        test, _, metric = str(item["regression"]).partition(".")
        bad = _metric(test, metric, "regression")
        if bad:
            wrong.append(bad)
        tol = item.get("tolerance_pct", 10)
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not math.isfinite(tol) or tol < 0:
            wrong.append(f"tolerance_pct must be a finite number >= 0 (got {tol!r})")
            tol = 0
        return Rule(kind="regression", test=test, metric=metric, tolerance_pct=float(tol), **common)
    if item[kind] is not True:
        wrong.append(f"{kind} takes `true`")
    return Rule(kind=kind, **common)


def _pairs(df: pd.DataFrame, mode: str | None, scenario: str, test: str, metric: str) -> pd.Series:
    """Median over repeats, per (src, dst); over every mode when mode is None."""
    sel = df[((df["mode"] == mode) if mode else True) & (df.scenario == scenario) & (df.test == test)
             & (df.metric == metric)]
    return sel.groupby(["src", "dst"]).value.median()


def _host_ratios(df: pd.DataFrame, mode: str, rule: Rule) -> pd.Series:
    """Per (src, dst): the pair's figure over the host-host figure of the same two nodes (either way). Round
    by round when the records carry their rounds (the baseline of the same round; the median over rounds),
    else the mode's own host-host figure or, without one, the run's (a pass that measured none)."""
    by_round = "round" in df and df["round"].notna().all()
    keys = ["src", "dst", "round"] if by_round else ["src", "dst"]

    def medians(m: str | None, scenario: str) -> pd.Series:
        sel = df[((df["mode"] == m) if m else True) & (df.scenario == scenario) & (df.test == rule.test)
                 & (df.metric == rule.metric)]
        return sel.groupby(keys).value.median()
    values = medians(mode, rule.scenario)
    base = medians(None if by_round else mode, "host-host")
    if base.empty and not by_round:
        base = medians(None, "host-host")
    ratios: dict[tuple, float] = {}
    for key, v in values.items():
        src, dst, *rnd = key
        b = base.get((src, dst, *rnd), base.get((dst, src, *rnd)))
        if b:
            ratios[key] = v / b
    out = pd.Series(ratios, dtype=float)
    return out.groupby(level=[0, 1]).median() if by_round and not out.empty else out


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def evaluate(rules: list[Rule], df: pd.DataFrame, traces: list[dict], baseline: pd.DataFrame | None = None,
             samples: list[dict] | None = None, baseline_samples: list[dict] | None = None,
             level: float = stats.LEVEL, expected: gaps.Expected | None = None) -> list[Outcome]:
    """Every rule on every mode it applies to. Raw RTT samples (of the run and of the baseline run), when
    given, let a regression of an RTT statistic be tested on them (see `_regression`). With the run's plan
    (`expected`), also each mode it planned, failing on what was planned and not measured. The records and
    samples may hold the size sweep's too (RunDir.frame(sweep=None)): a rule judges those of its `size`."""
    from netbench.report.summary import Figures, at_size
    views: dict[int | None, tuple] = {}  # size -> (records, baseline records, figures of both) at that size

    def view(size: int | None) -> tuple:
        if size not in views:
            now, now_samples = at_size(df, samples, size)
            then, then_samples = at_size(baseline, baseline_samples, size) if baseline is not None else (None, None)
            figures = (Figures(now, now_samples, level), Figures(then, then_samples, level)) \
                if baseline is not None else None
            views[size] = (now, then, figures)
        return views[size]
    outcomes = []
    run_modes = sorted(set(df["mode"].unique() if not df.empty else ()) | set(expected.modes if expected else ()))
    for rule in rules:
        modes = [m for m in run_modes if not rule.modes or m in rule.modes]
        if not modes:
            outcomes.append(Outcome(rule, "-", None, f"applies to {', '.join(rule.modes) or 'any mode'}; "
                                                     f"the run measured {', '.join(run_modes) or 'nothing'}"))
        for mode in modes:
            outcome = _one(rule, mode, traces, *view(rule.size))
            outcomes.append(_with_gaps(outcome, df, traces, expected, baseline) if expected else outcome)
    return outcomes


_GAPS_LISTED = 20  # per outcome; the rest are counted


def _with_gaps(o: Outcome, df: pd.DataFrame, traces: list[dict], expected: gaps.Expected,
               baseline: pd.DataFrame | None) -> Outcome:
    """The outcome, failed when a measurement it judges was planned and not made (df: every record)."""
    rule, mode = o.rule, o.mode
    if rule.kind == "regression" and baseline is None:
        return o  # not judged at all without a baseline
    if rule.kind == "reachable":  # at a size: the latency test the sweep measures
        tests = expected.latency_tests() if rule.size is None else [t for t in SIZE_TESTS if t in LATENCY_TESTS]
        missing = [g for t in tests for g in expected.missing(df, mode, rule.scenario, t, "reachable", rule.size)]
    elif rule.kind == "path":
        missing = expected.missing_traces(traces, mode)
    else:
        missing = expected.missing(df, mode, rule.scenario, rule.test, rule.metric, rule.size)
        if rule.kind == "ratio":  # the host baseline of those pairs (at that size), in whichever pass measured it
            missing += expected.missing(df, None, "host-host", rule.test, rule.metric, rule.size)
    if not missing:
        return o
    shown = [str(g) for g in missing[:_GAPS_LISTED]]
    if len(missing) > _GAPS_LISTED:
        shown.append(f"… and {len(missing) - _GAPS_LISTED} more not measured")
    summary = f"{o.summary}; {len(missing)} planned not measured"
    return Outcome(rule, mode, False, summary, [*o.violations, *shown])


def apply(run_dir, rules: list[Rule], baseline_dir=None, junit_path: Path | None = None) -> list[Outcome]:
    """Evaluate parsed rules on a stored run (and baseline) and write JUnit; the caller decides the exit.

    Written to the run's own gates.xml (the default), the verdicts are also kept as data in gates.json,
    which the report shows."""
    from netbench.results import RunDir
    run = RunDir.open(run_dir)
    base = RunDir.open(baseline_dir) if baseline_dir else None
    df = run.frame(sweep=None)  # the size sweep's too: a rule may name a size
    expected = gaps.Expected(run.meta(), df, str(run.path / "run.json"))
    outcomes = evaluate(rules, df, run.traces(), base.frame(sweep=None) if base else None, run.samples(sweep=None),
                        base.samples(sweep=None) if base else None, expected=expected if expected.known else None)
    own = run.path / "gates.xml"
    path = Path(junit_path) if junit_path else own
    path.write_text(junit(outcomes, run.run_id))
    if path.resolve() == own.resolve():
        run.write_gates([o.as_dict() for o in outcomes])
    return outcomes


def _one(rule: Rule, mode: str, traces: list[dict], df: pd.DataFrame, baseline: pd.DataFrame | None,
         figures: tuple | None = None) -> Outcome:
    """One rule on one mode, on the records (and baseline) of the rule's size."""
    label = f"{mode} {rule.where}"
    if rule.kind in ("threshold", "ratio"):
        values = _pairs(df, mode, rule.scenario, rule.test, rule.metric)
        if values.empty:
            return Outcome(rule, mode, None, f"{label}: no {rule.test}.{rule.metric} measured")
        if rule.kind == "ratio":
            values = _host_ratios(df, mode, rule)
            if values.empty:
                return Outcome(rule, mode, None, f"{label}: no host-host baseline measured for these pairs")
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
        return _regression(rule, mode, label, *figures)
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


def _regression(rule: Rule, mode: str, label: str, now, then) -> Outcome:
    """Worse than the baseline run by more than the tolerance, and significantly so: the test compare uses,
    with the tolerance as its minimum effect. Figures too few to test (one iperf3 run each) are judged on
    their values alone, and the summary says so."""
    cur_e, base_e = (f.get(mode, rule.scenario, rule.test, rule.metric) for f in (now, then))
    cur, base = cur_e.value, base_e.value
    higher = metrics.higher_is_better(rule.metric)
    if base == 0:  # e.g. loss 0% before: any loss now is infinitely worse, none is not worse
        worse = 0.0 if (higher or cur <= 0) else float("inf")
    else:
        worse = (base - cur) / base * 100 if higher else (cur - base) / base * 100
    d = stats.difference(base_e, cur_e, higher, base_e.level, rule.tolerance_pct / 100)
    msg = (f"{label}: {rule.test}.{rule.metric} {cur_e.text('.3g')} vs baseline {base_e.text('.3g')} "
           f"({worse:+.1f}% worse")
    if d.verdict == stats.UNTESTABLE:
        failed = worse > rule.tolerance_pct
        msg += f"; not tested: {d.note}, judged on the figures alone)"
    else:
        failed = d.verdict == stats.WORSE and worse > rule.tolerance_pct
        msg += f"; {d.test}: {'' if d.significant else 'not '}significant at {d.level:.0%})"
    return Outcome(rule, mode, not failed, msg + f", tolerance {rule.tolerance_pct:g}%", [msg] if failed else [])


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
                             name=f"{o.rule.name} [{o.mode} {o.rule.where}]", time="0")
        if o.passed is False:
            fail = ET.SubElement(case, "failure", message=o.summary, type=o.rule.kind)
            fail.text = "\n".join(o.violations)
        elif o.passed is None:
            ET.SubElement(case, "skipped", message=o.summary)
        out = ET.SubElement(case, "system-out")
        out.text = o.summary
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
