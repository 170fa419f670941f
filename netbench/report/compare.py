"""`netbench compare RUN_A RUN_B …`: the same metrics side by side, with ratios to the first run and
whether a difference is beyond the run-to-run spread (the ranges of pairs and repeats do not overlap)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from netbench import gaps, metrics
from netbench.results import RunDir


def compare(run_dirs: list[Path]) -> tuple[list[str], pd.DataFrame]:
    runs = [RunDir.open(p) for p in run_dirs]
    names = [r.run_id for r in runs]
    headline = set(metrics.headline_pairs(metrics.COMPARE))
    frames = []
    for r in runs:
        df = r.frame()
        if not df.empty:
            df = df[[(t, m) in headline for t, m in zip(df.test, df.metric, strict=True)]]
        g = df.groupby(["mode", "scenario", "test", "metric"]).value
        frames.append(pd.DataFrame({"median": g.median(), "min": g.min(), "max": g.max()}))
    rows = []
    keys = sorted(set().union(*(f.index for f in frames)))
    for key in keys:
        row = {"mode": key[0], "scenario": key[1], "test": key[2], "metric": key[3]}
        first = frames[0].loc[key] if key in frames[0].index else None
        for name, f in zip(names, frames, strict=True):
            if key not in f.index:
                row[name] = None
                row[f"{name} verdict"] = "not comparable"
                continue
            cur = f.loc[key]
            row[name] = float(cur["median"])
            if first is None or f is frames[0]:
                row[f"{name} verdict"] = "" if first is not None else "new"
                continue
            ratio = cur["median"] / first["median"] if first["median"] else None
            row[f"{name} ratio"] = ratio
            apart = cur["min"] > first["max"] or cur["max"] < first["min"]
            better = (cur["median"] > first["median"]) == metrics.higher_is_better(key[3])
            row[f"{name} verdict"] = ("better" if better else "worse") if apart else "within spread"
        rows.append(row)
    return names, pd.DataFrame(rows)


def incomplete(run_dirs: list[Path]) -> list[tuple[str, bool]]:
    """What makes a run less than a whole measurement, as (message, fatal): one that measured nothing or
    did not finish cannot be compared (fatal); one that left planned measurements unmade is said so."""
    out = []
    for path in run_dirs:
        run = RunDir.open(path)
        df, meta = run.frame(), run.meta()
        expected = gaps.Expected(meta, df, str(run.path / "run.json"))
        note = expected.stop_note()
        if df.empty:
            out.append((f"{run.run_id}: measured nothing" + (f" ({note})" if note else ""), True))
            continue
        if note:
            last = gaps.last_measured(df)
            out.append((f"{run.run_id}: {note}" + (f"; last measured: {last}" if last else ""), True))
        if expected.known:
            missing = gaps.all_missing(expected, df, [])  # traces are not compared
            if missing and not note:
                out.append((f"{run.run_id}: {len(missing)} planned measurement(s) not made, e.g. {missing[0]}",
                            False))
    return out
