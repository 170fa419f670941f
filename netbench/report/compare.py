"""`netbench compare RUN_A RUN_B …`: the same metrics side by side, each with its confidence interval, the
ratio to the first run, and whether the difference is real: significant at a stated level and at least a
stated minimum effect (`netbench.stats.difference`, the test the regression gates use too)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from netbench import gaps, metrics, stats
from netbench.report.summary import Figures, at_size
from netbench.results import RunDir


def compare(run_dirs: list[Path], level: float = stats.LEVEL,
            min_effect: float | None = None) -> tuple[list[str], pd.DataFrame]:
    """One row per mode (or per path of each run: `across_modes`), scenario, test and COMPARE headline
    metric of any run, and per size of a size sweep (run --sizes: a `size` column then, empty for the tests'
    own figures); per run its figure and
    interval, and for every run after the first its ratio to the first and the verdict (stats.BETTER, WORSE,
    SAME, UNTESTABLE; "new" or "not comparable" when one of the two lacks it). min_effect None: each
    metric's own (metrics.Metric.min_effect)."""
    runs = [RunDir.open(p) for p in run_dirs]
    names = [r.run_id for r in runs]
    headline = set(metrics.headline_pairs(metrics.COMPARE))
    frames = [r.frame(sweep=None) for r in runs]
    label = across_modes(frames)
    figures: list[dict] = []  # per run: size (None: the tests' own) -> its Figures
    present: list[set] = []  # per run: (mode, scenario, test, metric, size) measured
    for r, df in zip(runs, frames, strict=True):
        samples = r.samples(sweep=None)
        if label and not df.empty:
            df, samples = df.assign(mode=label), [{**s, "mode": label} for s in samples]
        if not df.empty:
            df = df[[(t, m) in headline for t, m in zip(df.test, df.metric, strict=True)]]
        sizes = [None, *sorted({int(z) for z in df["size"].dropna()})]
        figures.append({z: Figures(*at_size(df, samples, z), level) for z in sizes})
        present.append({(*k, z) for z, fig in figures[-1].items() if not fig.df.empty
                        for k in fig.df.groupby(["mode", "scenario", "test", "metric"]).groups})
    rows = []
    swept = any(k[4] is not None for keys in present for k in keys)
    for key in sorted(set().union(*present), key=lambda k: (*k[:4], -1 if k[4] is None else k[4])):
        *what, size = key
        row = {"mode": key[0], "scenario": key[1], "test": key[2], **({"size": size} if swept else {}),
               "metric": key[3]}
        metric = metrics.METRICS[key[3]]
        first = figures[0][size].get(*what) if key in present[0] else None
        for i, (name, fig) in enumerate(zip(names, figures, strict=True)):
            if key not in present[i]:
                row[name] = None
                row[f"{name} verdict"] = "not comparable"
                continue
            cur = fig[size].get(*what) if i else first
            row[name] = cur.value
            row[f"{name} ci"] = [cur.lo, cur.hi] if cur.has_interval else None
            if first is None or not i:
                row[f"{name} verdict"] = "" if first is not None else "new"
                continue
            d = stats.difference(first, cur, metric.higher_is_better, level,
                                 metric.min_effect if min_effect is None else min_effect)
            row[f"{name} ratio"] = d.ratio
            row[f"{name} ratio ci"] = [d.lo, d.hi] if d.lo is not None else None
            row[f"{name} p"] = d.p
            row[f"{name} test"] = d.test
            row[f"{name} verdict"] = d.verdict
            if d.note:
                row[f"{name} note"] = d.note
        rows.append(row)
    out = pd.DataFrame(rows)
    if swept:
        out["size"] = out["size"].astype("Int64")  # 1400, not 1.4e+03; empty for the tests' own figures
    return names, out


def across_modes(frames: list[pd.DataFrame]) -> str | None:
    """When every run measured one data path and they are not all the same one (the overlay as it runs,
    then `routes apply static`, then a run again), the runs are compared path against path: "vxlan →
    static". Runs of several modes each (`run --modes`) are compared mode by mode."""
    modes = [sorted(set(df["mode"])) if not df.empty else [] for df in frames]
    if any(len(m) != 1 for m in modes) or len({m[0] for m in modes}) < 2:
        return None
    return " → ".join(m[0] for m in modes)


def incomplete(run_dirs: list[Path]) -> list[tuple[str, bool]]:
    """What makes a run less than a whole measurement, as (message, fatal): one that measured nothing or
    did not finish cannot be compared (fatal); one that left planned measurements unmade is said so."""
    out = []
    for path in run_dirs:
        run = RunDir.open(path)
        df, meta = run.frame(sweep=None), run.meta()  # the size sweep's records are planned measurements too
        expected = gaps.Expected(meta, df, str(run.path / "run.json"))
        note = expected.stop_note()
        if df.empty:
            out.append((f"{run.run_id}: measured nothing" + (f" ({note})" if note else ""), True))
            continue
        if note:
            last = gaps.last_measured(df)
            out.append((f"{run.run_id}: {note}" + (f"; last measured: {last}" if last else ""), True))
        if expected.known:
            missing = gaps.all_missing(expected, df, run.traces())  # not compared, but made or not
            if missing and not note:
                out.append((f"{run.run_id}: {len(missing)} planned measurement(s) not made, e.g. {missing[0]}",
                            False))
    return out
