#!/usr/bin/env python3
"""Three consecutive `make demo`s (lab up, five modes in rounds, every pair, traces, report, gates, lab
down): each one's wall time against its target (under 3 minutes on a 2-core machine), its rankings of
the modes by pod TCP Gbit/s and RTT p50 with their intervals, whether every order the intervals
separate (no overlap, and at least the metric's minimum effect) agrees across the three, and whether
the host baseline is ever significantly slower than a pod path (it cannot be: the pods' packets cross
the same underlay and more)."""

from __future__ import annotations

import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

from netbench import metrics, stats
from netbench.report import summary
from netbench.results import RunDir

TARGET_S = 180
DEMOS = 3
DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
# (per-mode row key, label, format, higher is better, the metric's minimum effect)
RANKED = (("tcp_gbps", "TCP Gbit/s", ".3f", True, metrics.METRICS["gbps"].min_effect),
          ("rtt_p50_us", "RTT p50 µs", ".0f", False, metrics.METRICS["rtt_p50_us"].min_effect))


def one_demo() -> tuple[float, int, Path | None, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True)
    wall = time.monotonic() - start
    report = next((ln.split("report:", 1)[1].strip() for ln in proc.stdout.splitlines() if ln.startswith("report:")),
                  None)
    return wall, proc.returncode, Path(report).parent if report else None, proc.stdout[-3000:] + proc.stderr[-3000:]


def separated(a: stats.Estimate, b: stats.Estimate, min_effect: float) -> int:
    """1 when a's interval lies wholly above b's, -1 below, 0 when they overlap (or one has none) or the two
    differ by less than the metric's minimum effect (a 0.1% TCP difference on a capped link is no ranking)."""
    if not (a.has_interval and b.has_interval) or abs(a.value / b.value - 1) < min_effect:
        return 0
    return 1 if a.lo > b.hi else -1 if a.hi < b.lo else 0


def main() -> int:
    runs, ok = [], True
    for i in range(1, DEMOS + 1):
        wall, code, run_dir, tail = one_demo()
        print(f"demo {i}: {wall:.0f} s wall (target < {TARGET_S} s), exit {code}; run {run_dir}")
        ok &= wall < TARGET_S
        if run_dir is None:
            print(tail)
            return 1
        run = RunDir.open(run_dir)
        rows = summary.per_mode(run.frame(), run.samples())
        runs.append({r["mode"]: r for r in rows})
        failures = run.meta().get("failures") or []
        if failures:
            print(f"  {len(failures)} run failure(s), e.g. {failures[0]['where']} {failures[0]['what']}: "
                  f"{failures[0]['cause'][:100]}")
    modes = [m for m in runs[0] if m != summary.BASELINE]
    agree = True
    for key, label, fmt, higher, effect in RANKED:
        print(f"\n{label}, best first [95% interval]:")
        for i, rows in enumerate(runs, 1):
            order = sorted((m for m in rows if rows[m]["est"][key].value is not None),
                           key=lambda m, r=rows: r[m]["est"][key].value, reverse=higher)
            print(f"  demo {i}: " + " > ".join(f"{m} {rows[m]['est'][key].text(fmt)}" for m in order))
        for a, b in combinations(modes + [summary.BASELINE], 2):
            seen = {separated(rows[a]["est"][key], rows[b]["est"][key], effect) for rows in runs
                    if a in rows and b in rows} - {0}
            if len(seen) > 1:
                agree = False
                print(f"  DISAGREE: {a} vs {b}: the intervals separate them one way in one demo, the other in another")
    print(f"\nevery order the intervals separate agrees across the {DEMOS} demos: {'yes' if agree else 'NO'}")
    slower = []
    for i, rows in enumerate(runs, 1):
        host = rows.get(summary.BASELINE)
        if host is None:
            slower.append(f"demo {i}: no host baseline")
            continue
        for m in modes:
            for key, label, _, higher, _ in RANKED:
                d = stats.difference(host["est"][key], rows[m]["est"][key], higher)
                if d.verdict == stats.BETTER:
                    slower.append(f"demo {i}: host {label} significantly worse than {m}'s ({d.text()})")
    print("the host baseline never significantly slower than a pod path: " + ("yes" if not slower else "NO"))
    for line in slower:
        print(f"  {line}")
    return 0 if ok and agree and not slower else 1


if __name__ == "__main__":
    sys.exit(main())
