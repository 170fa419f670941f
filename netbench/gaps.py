"""What a run meant to measure and did not: the plan run.json keeps from the start, against the records,
each gap with the reason the run knows (a node down and why, a step's error, a mode that could not be
set, the run stopped before it). Gates fail on gaps; compare and the report say a run is incomplete."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from netbench.errors import InvalidValue, UserError
from netbench.plan import LATENCY_TESTS, Plan, make_plan, planned_pairs, planned_traces

_CAUSE_CHARS = 160


@dataclass(frozen=True)
class Gap:
    mode: str
    scenario: str
    src: str
    dst: str
    test: str  # or "trace"
    why: str = ""
    round: int | None = None  # of a run in several rounds (run --rounds)
    size: int | None = None  # of the size sweep (run --sizes); None: the test itself

    def __str__(self) -> str:
        what = f"not measured: {self.src}->{self.dst} {self.scenario} {self.test}"
        what += f" size {self.size}" if self.size is not None else ""
        what += f" in round {self.round}" if self.round is not None else ""
        return f"{what} ({self.why})" if self.why else what


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _CAUSE_CHARS else text[:_CAUSE_CHARS - 1] + "…"


class Expected:
    """A run's plan (run.json `plan`), expanded per (mode, scenario, test) when a reader asks; `known` is
    False for a run that recorded none (schema 1), which then has no gaps that can be seen."""

    def __init__(self, meta: dict, df: pd.DataFrame | None = None, where: str = "run.json") -> None:
        plan = meta.get("plan")
        self.known = isinstance(plan, dict)
        self.finished = meta.get("finished") is not False  # schema 1 wrote a time, even after Ctrl-C
        self.stopped = meta.get("stopped") or {}
        self.failures = meta.get("failures") or []
        self.down = set(meta.get("nodes_down") or [])
        self.passes: list[tuple[str, tuple[str, ...], int | None]] = []  # (mode, scenarios, round)
        self.rounds = 1
        self._plans: dict[tuple[str, ...], Plan] = {}
        if not self.known:
            self.nodes, self.tests, self.pairs, self.trace, self.parallel = [], [], None, False, False
            self.podless: frozenset[str] = frozenset()
            self.sizes: dict[str, list[int]] = {}
            return
        self.nodes, self.tests = plan["nodes"], plan["tests"]
        self.sizes = plan.get("sizes") or {}  # the size sweep: test -> its sizes, measured in every pass
        self.podless = frozenset(plan.get("podless") or ())  # nodes whose roles run no pods: host-host only
        self.pairs = [tuple(p) for p in plan["pairs"]] if plan.get("pairs") else None
        self.trace, self.parallel = bool(plan.get("trace")), bool(plan.get("parallel_pairs"))
        self.rounds = int(plan.get("rounds") or 1)
        seen = sorted(set(df["mode"])) if df is not None and not df.empty else []
        for p in plan["passes"]:
            mode = p["mode"] or self._found_mode(meta, seen)
            self.passes.append((mode, tuple(p["scenarios"]), p.get("round")))
        try:
            for _, scenarios, _ in self.passes:
                self._plan(scenarios)
        except InvalidValue as exc:
            raise UserError(f"{where}: {exc}") from None

    @staticmethod
    def _found_mode(meta: dict, seen: list[str]) -> str:
        """The mode a run without --modes measured in: run.json's, or (a run stopped before it wrote the mode
        it found) the one its records carry."""
        mode = meta.get("mode") or "unknown"
        return seen[0] if mode == "unknown" and len(seen) == 1 else mode

    def _plan(self, scenarios: tuple[str, ...]) -> Plan:
        if scenarios not in self._plans:
            self._plans[scenarios] = make_plan(self.nodes, scenarios, self.parallel, self.pairs, self.podless)
        return self._plans[scenarios]

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(mode for mode, _, _ in self.passes))

    def latency_tests(self) -> list[str]:
        return [t for t in self.tests if t in LATENCY_TESTS]

    def planned(self, mode: str | None, scenario: str, test: str) -> set[tuple[str, str, int | None]]:
        """(src, dst, round) planned for `test` in `scenario` in `mode`'s passes (in any pass when mode is None);
        round None in a run of one round (or one that recorded none)."""
        if test not in self.tests:
            return set()
        out: set[tuple[str, str, int | None]] = set()
        for m, scenarios, r in self.passes:
            if (mode is None or m == mode) and scenario in scenarios:
                at = r if self.rounds > 1 else None
                out |= {(s, d, at) for s, d in planned_pairs(self._plan(scenarios), scenario, test)}
        return out

    def missing(self, df: pd.DataFrame, mode: str | None, scenario: str, test: str, metric: str,
                size: int | None = None) -> list[Gap]:
        """Planned measurements with no `test`.`metric` record (in its round; at `size` of the sweep, None: of
        the test itself): each a Gap with the reason the run knows."""
        planned = self.planned(mode, scenario, test) if size is None or size in self.sizes.get(test, ()) else set()
        if not planned:
            return []
        sel = df[(df.scenario == scenario) & (df.test == test) & (df.metric == metric)
                 & ((df["mode"] == mode) if mode else True)]
        if "size" in sel:
            sel = sel[sel["size"].isna() if size is None else sel["size"] == size]
        what = f"{scenario} {test}" + (f" size {size}" if size is not None else "")
        rounds = pd.to_numeric(sel["round"], errors="coerce") if self.rounds > 1 and "round" in sel else None
        at = [None] * len(sel) if rounds is None else [int(r) if r == r else None for r in rounds]
        have = set(zip(sel.src, sel.dst, at, strict=True))
        return [Gap(mode or "-", scenario, s, d, test, self.why(mode, f"{s}->{d}", (s, d), what, r), r, size)
                for s, d, r in sorted(planned - have, key=lambda k: (k[2] or 0, k[0], k[1]))]

    def missing_traces(self, traces: list[dict], mode: str) -> list[Gap]:
        if not self.trace or not any(m == mode and "pod-pod" in sc for m, sc, _ in self.passes):
            return []
        have = {(t["src"], t["dst"]) for t in traces if t.get("run_mode", t.get("mode")) == mode}
        return [Gap(mode, "pod-pod", a, b, "trace", self.why(mode, f"{a}->{b}", (a, b), "trace"))
                for a, b in planned_traces([n for n in self.nodes if n not in self.podless], self.pairs)
                if (a, b) not in have]

    def why(self, mode: str | None, where: str, nodes: tuple[str, str], what: str, round_no: int | None = None) -> str:
        """What the run recorded about a measurement it did not make (in round_no: a run in several rounds
        notes the round of each failure, run.Session.fail)."""
        switched = {f"mode {mode}", f"mode {mode} round {round_no}"}
        for f in self.failures:
            if f["where"] in switched and f["what"] == "switch":
                return _short(f"mode {mode} could not be set: {f['cause']}")
        for node in dict.fromkeys(nodes):
            if node in self.down:
                cause = next((f for f in self.failures if f["where"] == node and f["what"] != "cleanup"), None)
                return _short(f"{node} down: {cause['what']}: {cause['cause']}" if cause else f"{node} down")
        cause = next((f for f in self.failures if f["where"] == where and f["what"] == what
                      and (round_no is None or f["cause"].startswith(f"round {round_no}:"))), None)
        if cause:
            return _short(cause["cause"])
        if not self.finished:
            return "the run stopped before it"
        return ""

    def stop_note(self) -> str | None:
        """Where an unfinished run stopped, as a sentence; None for a finished one."""
        if self.finished:
            return None
        if not self.stopped:
            return "the run did not finish (killed, or still running: run.json says finished: false)"
        at = f" during {self.stopped['at']!s}" if self.stopped.get("at") else ""
        return f"the run did not finish: stopped by {self.stopped.get('cause', '?')}{at}"


def last_measured(df: pd.DataFrame) -> str | None:
    """The latest record's mode, scenario, pair and test (and size): where a killed run got to."""
    if df.empty:
        return None
    times = pd.to_numeric(df["time"], errors="coerce")
    r = df.loc[times.idxmax()] if times.notna().any() else df.iloc[-1]
    size = r.get("size")
    return f"{r['mode']} {r['scenario']} {r['src']}->{r['dst']} {r['test']}" + (
        f" size {int(size)}" if size is not None and size == size else "")


def all_missing(expected: Expected, df: pd.DataFrame, traces: list[dict]) -> list[Gap]:
    """Every planned measurement without a record (by the metric every record of its test carries:
    `reachable` for latency, `gbps` for throughput), at each size of the sweep too, and every planned trace
    not made. df: every record of the run, the sweep's too (RunDir.frame(sweep=None))."""
    out: dict[Gap, None] = {}  # a mode run in two passes is one set of gaps
    for mode, scenarios, _ in expected.passes:
        for scenario in scenarios:
            for test in expected.tests:
                metric = "reachable" if test in LATENCY_TESTS else "gbps"
                for size in (None, *expected.sizes.get(test, ())):
                    out.update(dict.fromkeys(expected.missing(df, mode, scenario, test, metric, size)))
        out.update(dict.fromkeys(expected.missing_traces(traces, mode)))
    return list(out)
