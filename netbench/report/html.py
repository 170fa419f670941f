"""`netbench report RUN_DIR`: index.html (one self-contained file), summary.md, the tidy CSV and the tidy table
of headline figures with their intervals (intervals.csv).

Gate verdicts come from the run's gates.json (written with gates.xml by `netbench gate` / `run --gates`)."""

from __future__ import annotations

import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from netbench import gaps, metrics, stats
from netbench.report import plots, reference, summary
from netbench.results import RunDir

TEMPLATES = Path(__file__).parent / "templates"


def reference_groups() -> tuple[list[dict], str | None]:
    """The published figures for the report's external-context section, or why they could not be shown.

    A broken reference file must not cost the user the report of their measurements: say so in the section."""
    try:
        return reference.for_report(), None
    except reference.ReferenceDataError as e:
        return [], str(e)


def verdict_labels(verdicts: list[dict]) -> list[dict]:
    """A trace's verdict kinds, each once ("delivered, rate-limited", not "delivered rate-limited
    rate-limited"); a kind is ok only when every verdict of it is."""
    kinds: dict[str, bool] = {}
    for v in verdicts:
        kinds[v["kind"]] = kinds.get(v["kind"], True) and bool(v["ok"])
    return [{"kind": k, "ok": ok} for k, ok in kinds.items()]


def difference_tables(found: list[dict]) -> list[dict]:
    """summary.differences as one matrix per column: rows the modes compared, columns their references."""
    out = []
    for col in found:
        modes = list(dict.fromkeys([p["mode"] for p in col["pairs"]] + [p["reference"] for p in col["pairs"]]))
        cells = {(p["mode"], p["reference"]): p["difference"] for p in col["pairs"]}
        out.append({"label": col["label"], "rows": modes[:-1], "columns": modes[1:], "cells": cells})
    return out


_GAPS_SHOWN = 50


def completeness(meta: dict, df, traces: list[dict], where: str) -> dict:
    """For the report's banner: whether the run finished, where it stopped, what it planned and did not make
    (df: every record, the size sweep's too)."""
    expected = gaps.Expected(meta, df, where)
    missing = gaps.all_missing(expected, df, traces) if expected.known else []
    return {"stopped": expected.stop_note(), "last": gaps.last_measured(df), "known": expected.known,
            "planned": (meta.get("plan") or {}).get("measurements"), "missing_count": len(missing),
            "missing": [str(g) for g in missing[:_GAPS_SHOWN]]}


def write(run_dir: Path) -> dict[str, Path]:
    run = RunDir.open(run_dir)
    meta, df, samples = run.meta(), run.frame(), run.samples()
    figures = summary.Figures(df, samples)  # each bootstrap once, for every view
    rows = summary.per_mode(df, samples, figures=figures)
    sweep, sweep_samples = run.frame(sweep=True), run.samples(sweep=True)
    sized = summary.per_size(sweep, sweep_samples)
    traces = run.traces()
    complete = completeness(meta, run.frame(sweep=None), traces, str(run.path / "run.json"))
    for t in traces:
        t["waterfall"] = plots.waterfall(t)
        t["labels"] = verdict_labels(t["verdicts"])
    heatmaps = []
    modes = list(dict.fromkeys(df["mode"]))
    for test, metric in metrics.headline_pairs(metrics.HEATMAP):
        heatmaps += plots.heatmaps(df, modes, test, metric, metrics.title(test, metric))
    refs, refs_error = reference_groups()
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        meta=meta, summary=rows, columns=summary.COLUMNS, cell_parts=summary.cell_parts, traces=traces,
        baseline=summary.BASELINE, borrowed=summary.borrowed_baseline(rows), references=refs,
        differences=difference_tables(summary.differences(rows)), statistics=stats.described(),
        SAME=stats.SAME, UNTESTABLE=stats.UNTESTABLE,
        references_error=refs_error,
        failures=meta.get("failures", []), gates=run.gates(), complete=complete,
        started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta.get("started", 0))),
        sizes=summary.sizes_table(sized) if sized else None,
        plots={"throughput": plots.throughput(df), "latency": plots.latency(rows), "cdf": plots.latency_cdf(samples),
               "heatmaps": heatmaps, "sizes": plots.sizes(sweep, sweep_samples)},
    )
    out = {"html": run.path / "index.html", "summary": run.path / "summary.md", "csv": run.path / "table.csv",
           "intervals": summary.write_intervals(run.path, df, samples, figures=figures, sized=sized)}
    out["html"].write_text(html)
    md = summary.markdown(rows, f"netbench {meta['run_id']} (mode {meta.get('mode')})")
    if complete["stopped"]:
        md += f"\n**Incomplete**: {complete['stopped']}" + (f"; last measured: {complete['last']}."
                                                            if complete["last"] else ".") + "\n"
    if complete["missing_count"]:
        md += f"\n**Not measured**: {complete['missing_count']} planned measurement(s), e.g. {complete['missing'][0]}\n"
    if sized:
        md += "\n" + summary.sizes_markdown(sized)
    verdicts = [f"- {t['src']} → {t['dst']} ({t['mode']}): " + ", ".join(v["kind"] for v in t["labels"])
                for t in traces]
    if verdicts:
        md += "\n**Traces**\n\n" + "\n".join(verdicts) + "\n"
    if refs:  # last, under its own heading: never read as part of the measured table
        md += "\n" + reference.markdown(refs)
    out["summary"].write_text(md)
    if not out["csv"].exists():
        run.write_table()
    return out
