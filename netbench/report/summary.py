"""Summaries of a run's tidy table, their figures and columns picked from `netbench.metrics`, each figure with
its confidence interval (`netbench.stats`): per mode, scenario and test (`netbench run`'s table and --json),
per mode (every report view: pod throughput and latency against the host baseline), which differences
between modes are real, per message size of a size sweep (run --sizes: per_size), and all of it as one tidy
table of intervals (intervals.csv).

RTT statistics come from the raw samples (samples.jsonl) when the run has them: the statistic of every
sample of the mode's pairs pooled, with a bootstrap interval. Without them (and for every other metric),
a figure is the median over pairs and repeats of the per-pair records."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from netbench import metrics, stats
from netbench.stats import Estimate

BASELINE = "host (baseline)"  # the mode label of the host-to-host row that per_mode appends


class Figures:
    """The estimates of one run, computed once: the bootstrap of a mode, scenario and test serves every RTT
    statistic of it, in every view."""

    def __init__(self, df: pd.DataFrame, samples: list[dict] | None = None, level: float = stats.LEVEL) -> None:
        self.df, self.level = df, level
        lines: dict[tuple, list[dict]] = {}  # (mode, scenario, test) -> its lines of samples.jsonl
        for s in samples or []:
            for mode in (s["mode"], None):  # None: every mode (the run-wide host baseline)
                lines.setdefault((mode, s["scenario"], s["test"]), []).append(s)
        self._units = {key: _units(group) for key, group in lines.items()}
        self._cache: dict[tuple, dict[str, Estimate]] = {}

    def rows(self, mode: str | None, scenario: str, test: str, metric: str) -> pd.DataFrame:
        df = self.df
        return df[((df["mode"] == mode) if mode is not None else True) & (df.scenario == scenario)
                  & (df.test == test) & (df.metric == metric)]

    def get(self, mode: str | None, scenario: str, test: str, metric: str) -> Estimate:
        """One figure of a mode (None: of every mode) and scenario, with its interval."""
        m = metrics.METRICS[metric]
        units = self._units.get((mode, scenario, test))
        if m.from_samples and units:
            # the percentiles in one bootstrap, the moments (mean, stddev: a costlier one) in another
            key = (mode, scenario, test, isinstance(m.stat, float))
            if key not in self._cache:
                names = [s for s in metrics.sample_stats() if s.from_samples and isinstance(s.stat, float) == key[3]]
                found = stats.from_samples(units, [s.stat for s in names], self.level)
                self._cache[key] = {s.name: e for s, e in zip(names, found, strict=True)}
            return self._cache[key][metric]
        return stats.from_values(self.rows(mode, scenario, test, metric).value, self.level)

    def vs_host(self, mode: str, scenario: str, test: str, metric: str = "gbps") -> tuple[Estimate, str | None]:
        """A mode's figure over the host-host one, and which baseline it took: "round" (each round's figure
        over the host baseline of the same round, when the records carry their rounds), else "mode" (its own
        pass's host-host) or "run" (every host-host of the run: a pass that measured none); None: no baseline."""
        pod, host = self.rows(mode, scenario, test, metric), self.rows(None, "host-host", test, metric)
        if pod.empty or host.empty:
            return stats.NONE, None
        if "round" in pod and pod["round"].notna().all() and host["round"].notna().all():
            rounds = sorted(set(pod["round"]) & set(host["round"]))
            if rounds:
                return stats.round_ratio([pod.value[pod["round"] == r] for r in rounds],
                                         [host.value[host["round"] == r] for r in rounds], self.level), "round"
        own = not self.rows(mode, "host-host", test, metric).empty
        base = self.get(mode if own else None, "host-host", test, metric)
        return stats.ratio(self.get(mode, scenario, test, metric), base, self.level), "mode" if own else "run"

    def cpu_per_gbps(self, mode: str | None, scenario: str) -> Estimate:
        """Both ends' iperf3 CPU (% of a host) per TCP Gbit/s delivered; the three figures of one iperf3 run
        resampled together."""
        parts = [self.rows(mode, scenario, "tcp", m) for m in ("cpu_snd_pct", "cpu_rcv_pct", "gbps")]
        if any(p.empty for p in parts):
            return stats.NONE
        keys = ["mode", "src", "dst", "repeat"]
        table = parts[0][keys + ["value"]]
        for p in parts[1:]:
            table = table.merge(p[keys + ["value"]], on=keys)
        snd, rcv, gbps = (float(p.value.median()) for p in parts)
        if not gbps:
            return stats.NONE
        v = table.drop(columns=keys).to_numpy(dtype=float)
        reps = None
        if len(v) > 1:
            r = stats.median_reps(v)
            with np.errstate(divide="ignore", invalid="ignore"):
                reps = (r[0] + r[1]) / r[2]
        return stats.derived((snd + rcv) / gbps, reps, [stats.from_values(parts[2].value, self.level)], self.level)


def _units(lines: list[dict]) -> list[list[float]]:
    """The units a bootstrap resamples: the rounds, when the samples come from two or more (a drift of the
    machine between rounds then widens the interval); else each pair's pass."""
    rounds: dict = {}
    for s in lines:
        rounds.setdefault(s.get("round"), []).extend(s["rtt_us"])
    if len(rounds) > 1 and None not in rounds:
        return list(rounds.values())
    return [s["rtt_us"] for s in lines]


def _add(row: dict, name: str, e: Estimate) -> None:
    """A figure into a row: its value under `name`, the estimate (interval, method) under row["est"]."""
    row[name] = e.value
    row.setdefault("est", {})[name] = e


def per_test(df: pd.DataFrame, samples: list[dict] | None = None, level: float = stats.LEVEL,
             figures: Figures | None = None) -> list[dict]:
    """Per mode, scenario and test: the test's SUMMARY headline metrics (see the module's docstring), each
    with its interval under "ci" ([lo, hi], None when there is none; "ci_notes" says why)."""
    if df.empty:
        return []
    fig = figures or Figures(df, samples, level)
    rows = []
    for (mode, scenario, test), group in df.groupby(["mode", "scenario", "test"], sort=False):
        row = {"mode": mode, "scenario": scenario, "test": test,
               "pairs": group[["src", "dst"]].drop_duplicates().shape[0]}
        ci, notes = {}, {}
        for m in metrics.headline(metrics.SUMMARY, test):
            if not (group.metric == m.name).any():
                continue
            e = fig.get(mode, scenario, test, m.name)
            row[m.name] = e.value
            ci[m.name] = [e.lo, e.hi] if e.has_interval else None
            if e.note:
                notes[m.name] = e.note
        e = fig.vs_host(mode, scenario, test)[0] if scenario != "host-host" and "gbps" in row else stats.NONE
        if e.value is not None:
            row[VS_HOST], ci[VS_HOST] = e.value, [e.lo, e.hi] if e.has_interval else None
            if e.note:
                notes[VS_HOST] = e.note
        rows.append({**row, "ci": ci, **({"ci_notes": notes} if notes else {})})
    return rows


VS_HOST = "gbps_vs_host"  # per_test's Gbit/s over the host-host Gbit/s of the same test (Figures.vs_host)


def at_size(df: pd.DataFrame, samples: list[dict] | None, size: int | None) -> tuple[pd.DataFrame, list[dict]]:
    """The records and raw samples of one message size of the sweep (None: the tests' own), from any mix of
    them (RunDir.frame(sweep=None)): a figure never mixes sizes."""
    if "size" in df:
        df = df[df["size"].isna() if size is None else df["size"] == size].reset_index(drop=True)
    elif size is not None:
        df = df.iloc[0:0]
    return df, [s for s in samples or [] if s.get("size") == size]


def per_size(sweep: pd.DataFrame, samples: list[dict] | None = None, level: float = stats.LEVEL) -> list[dict]:
    """per_test of the size sweep (run --sizes), one message size at a time: each row also names its "size";
    rows by mode, scenario and test, then size. RTT statistics are bootstrapped from the size's own raw
    samples, Gbit/s over its pairs × repeats, "vs host" against host-host at the same size."""
    if sweep.empty or "size" not in sweep:
        return []
    rows = []
    for size in sorted({int(z) for z in sweep["size"].dropna()}):
        rows += [{"size": size, **r} for r in per_test(*at_size(sweep, samples, size), level)]
    order = {k: i for i, k in enumerate(dict.fromkeys(zip(sweep["mode"], sweep.scenario, sweep.test, strict=True)))}
    return sorted(rows, key=lambda r: (order[(r["mode"], r["scenario"], r["test"])], r["size"]))


def _mode_figures(fig: Figures, mode: str | None, scenario: str) -> dict:
    """One row of the per-mode table: the measured columns of metrics.MODE_COLUMNS and cpu_per_gbps."""
    row: dict = {}
    for c in metrics.MODE_COLUMNS:
        if c.metric:
            _add(row, c.key, fig.get(mode, scenario, c.test, c.metric) if not fig.rows(
                mode, scenario, c.test, c.metric).empty else stats.NONE)
    _add(row, "cpu_per_gbps", fig.cpu_per_gbps(mode, scenario))
    return row


def per_mode(df: pd.DataFrame, samples: list[dict] | None = None, level: float = stats.LEVEL,
             figures: Figures | None = None) -> list[dict]:
    """One row per mode in the order the modes were run, then one BASELINE row when host-host was measured.

    A mode's "vs host" is taken round by round against the host baseline of the same round (every round
    measures one); in a run that recorded no rounds, against its own pass's host-host figure, else the
    figure of every host-host measurement in the run (the underlay does not change with the mode).
    `host_baseline` says which: "round", "mode", "run" or None (Figures.vs_host). Every figure's estimate
    (interval, method) is in row["est"].
    """
    if df.empty:
        return []
    fig = figures or Figures(df, samples, level)
    host = df[df.scenario == "host-host"]
    run_rtt = fig.get(None, "host-host", "udp_rr", "rtt_p50_us") if not host.empty else stats.NONE
    rows = []
    for mode in dict.fromkeys(df["mode"]):
        row = {"mode": mode, **_mode_figures(fig, mode, "pod-pod")}
        vs_host, baseline = fig.vs_host(mode, "pod-pod", "tcp")
        rtt_own = not fig.rows(mode, "host-host", "udp_rr", "rtt_p50_us").empty
        _add(row, "tcp_vs_host", vs_host)
        _add(row, "host_rtt_p50_us", fig.get(mode, "host-host", "udp_rr", "rtt_p50_us") if rtt_own else run_rtt)
        row["host_baseline"] = baseline
        rows.append(row)
    if not host.empty:
        row = {"mode": BASELINE, **_mode_figures(fig, None, "host-host"), "host_baseline": None}
        _add(row, "tcp_vs_host", Estimate(1.0) if row["tcp_gbps"] else stats.NONE)
        _add(row, "host_rtt_p50_us", row["est"]["rtt_p50_us"])
        rows.append(row)
    return rows


def borrowed_baseline(rows: list[dict]) -> list[str]:
    """Modes whose "vs host" used the run-wide host-host figure because their own pass measured none."""
    return [r["mode"] for r in rows if r.get("host_baseline") == "run"]


COLUMNS = [(c.key, c.label, c.fmt) for c in metrics.MODE_COLUMNS]  # (row key, heading, format spec)
_BETTER = {c.key: metrics.higher_is_better(c.metric) for c in metrics.MODE_COLUMNS if c.metric}
_BETTER["cpu_per_gbps"] = False
_EFFECT = {c.key: metrics.METRICS[c.metric].min_effect for c in metrics.MODE_COLUMNS if c.metric}


def cell_parts(row: dict, key: str, fmt: str) -> tuple[str, str]:
    """A figure and its interval as text, ("46", "[43–49]"); ("46", "") when it has none (too few values)."""
    v = row.get(key)
    if v is None:
        return "–", ""
    e = row.get("est", {}).get(key)
    return format(v, fmt), (f"[{e.lo:{fmt}}–{e.hi:{fmt}}]" if e is not None and e.has_interval else "")


def cell(row: dict, key: str, fmt: str) -> str:
    """A figure with its interval, "46 [43–49]"; alone when it has none (too few values: the notes say)."""
    return " ".join(p for p in cell_parts(row, key, fmt) if p)


def differences(rows: list[dict], level: float = stats.LEVEL, min_effect: float | None = None) -> list[dict]:
    """For every column compared (each with two modes measured) and every pair of rows (modes, then the
    baseline): the later row as reference, the earlier against it. min_effect None: each metric's own."""
    out = []
    for key, label, _ in COLUMNS:
        if key not in _BETTER:
            continue
        measured = [r for r in rows if r.get(key) is not None]
        pairs = []
        for a, b in combinations(measured, 2):
            d = stats.difference(b["est"][key], a["est"][key], _BETTER[key], level,
                                 _EFFECT.get(key, stats.MIN_EFFECT) if min_effect is None else min_effect)
            pairs.append({"mode": a["mode"], "reference": b["mode"], "difference": d})
        if pairs:
            out.append({"key": key, "label": label, "pairs": pairs})
    return out


def difference_lines(found: list[dict]) -> list[str]:
    """One line per column: the real differences ("udp +590% [+560%, +620%] vs vxlan (worse)"), then the
    pairs with none, then those that could not be tested."""
    lines = []
    for col in found:
        real = [f"{p['mode']} {p['difference'].text()} vs {p['reference']} ({p['difference'].verdict})"
                for p in col["pairs"] if p["difference"].real]
        same = [f"{p['mode']}–{p['reference']}" for p in col["pairs"] if p["difference"].verdict == stats.SAME]
        untested = [f"{p['mode']}–{p['reference']}" for p in col["pairs"]
                    if p["difference"].verdict == stats.UNTESTABLE]
        if untested and not real and not same:  # nothing could be tested: say why once
            lines.append(f"{col['label']}: not testable ({col['pairs'][0]['difference'].note})")
            continue
        parts = [f"real: {'; '.join(real)}" if real else "no real difference"]
        if same and real:
            parts.append(f"no significant difference: {', '.join(same)}")
        if untested:
            parts.append(f"not testable (too few values): {', '.join(untested)}")
        lines.append(f"{col['label']}: " + " · ".join(parts))
    return lines


def intervals(df: pd.DataFrame, samples: list[dict] | None = None, level: float = stats.LEVEL,
              figures: Figures | None = None, sized: list[dict] | None = None) -> pd.DataFrame:
    """The tidy table of headline figures with intervals: one row per mode, scenario, test and metric (every
    SUMMARY headline, and gbps_vs_host), then CPU per Gbit/s per mode (the baseline's mode: BASELINE). Given
    the size sweep's rows (`sized`, per_size), their figures follow, and a `size` column names each one's size
    (empty for the rows before them)."""
    figures = figures or Figures(df, samples, level)
    out = []
    for r in per_test(df, samples, level, figures):
        out += _interval_rows(r)
    for r in per_mode(df, samples, level, figures):
        e = r["est"]["cpu_per_gbps"]
        if e.value is not None:
            out.append({"mode": r["mode"], "scenario": "pod-pod" if r["mode"] != BASELINE else "host-host",
                        "test": "tcp", "metric": "cpu_per_gbps", "value": e.value, "ci_lo": e.lo, "ci_hi": e.hi,
                        "note": e.note})
    columns = ["mode", "scenario", "test", "metric", "value", "ci_lo", "ci_hi", "note"]
    if sized:  # a run without a sweep keeps the table it always had
        out += [row for r in sized for row in _interval_rows(r)]
        columns.insert(3, "size")
    table = pd.DataFrame(out, columns=columns)
    table.insert(len(columns) - 1, "level", level)
    if sized:
        table["size"] = table["size"].astype("Int64")  # 64, not 64.0; empty for the tests' own figures
    return table


def _interval_rows(r: dict) -> list[dict]:
    """One per_test (or per_size) row as rows of the tidy table of intervals, one per figure."""
    out = []
    for name, value in r.items():
        if name in metrics.METRICS or name == VS_HOST:
            ci = r["ci"].get(name)
            out.append({"mode": r["mode"], "scenario": r["scenario"], "test": r["test"], "size": r.get("size"),
                        "metric": name, "value": value, "ci_lo": ci[0] if ci else None,
                        "ci_hi": ci[1] if ci else None, "note": r.get("ci_notes", {}).get(name, "")})
    return out


def write_intervals(run_path: Path, df: pd.DataFrame, samples: list[dict] | None, level: float = stats.LEVEL,
                    figures: Figures | None = None, sized: list[dict] | None = None) -> Path:
    path = Path(run_path) / "intervals.csv"
    intervals(df, samples, level, figures, sized).to_csv(path, index=False)
    return path


# the size sweep's headline figures: the console's table, the report's and summary.md's
SIZE_COLUMNS = (("rtt_p50_us", "RTT p50 µs", ".0f"), ("rtt_p99_us", "RTT p99 µs", ".0f"), ("gbps", "TCP Gbit/s", ".3f"))


def figure(r: dict, name: str, spec: str) -> str | None:
    """A summary row's figure with its interval, "46 [43–49]"; alone when it has none; None when not measured."""
    v, ci = r.get(name), r.get("ci", {}).get(name)
    if v is None:
        return None
    return format(v, spec) + (f" [{ci[0]:{spec}}–{ci[1]:{spec}}]" if ci else "")


def sizes_table(rows: list[dict], by_mode: bool | None = None) -> tuple[list[str], list[list[str]]]:
    """per_size's rows as a table of text: headings, then one line per mode, scenario, test and size."""
    by_mode = len({r["mode"] for r in rows}) > 1 if by_mode is None else by_mode
    heads = (["mode"] if by_mode else []) + ["scenario", "test", "size B", "pairs"] + [h for _, h, _ in SIZE_COLUMNS]
    body = [([r["mode"]] if by_mode else []) + [r["scenario"], r["test"], str(r["size"]), str(r["pairs"])]
            + [figure(r, name, spec) or "–" for name, _, spec in SIZE_COLUMNS] for r in rows]
    return heads, body


def sizes_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    heads, body = sizes_table(rows)
    lines = ["**Size sweep** (udp_rr payload / tcp MSS, [95% interval])", "", "| " + " | ".join(heads) + " |",
             "|" + "---|" * len(heads)] + ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], title: str, level: float = stats.LEVEL) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    borrowed = borrowed_baseline(rows)
    if borrowed:
        lines += ["", f"\"vs host\" of {', '.join(borrowed)}: the run-wide host-to-host median "
                  "(host-host was not measured in that pass)."]
    found = differences(rows, level)
    if found:
        lines += ["", "**Which differences are real**", ""] + [f"- {ln}" for ln in difference_lines(found)]
    lines += ["", stats.described(level) + " A figure without brackets has too few values for an interval."]
    return "\n".join(lines) + "\n"
