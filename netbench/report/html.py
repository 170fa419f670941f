"""`netbench report RUN_DIR`: index.html (one self-contained file), summary.md and the tidy CSV.

Gate verdicts come from the run's gates.json (written with gates.xml by `netbench gate` / `run --gates`)."""

from __future__ import annotations

import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from netbench import gaps, metrics
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


_GAPS_SHOWN = 50


def completeness(meta: dict, df, traces: list[dict], where: str) -> dict:
    """For the report's banner: whether the run finished, where it stopped, what it planned and did not make."""
    expected = gaps.Expected(meta, df, where)
    missing = gaps.all_missing(expected, df, traces) if expected.known else []
    return {"stopped": expected.stop_note(), "last": gaps.last_measured(df), "known": expected.known,
            "planned": (meta.get("plan") or {}).get("measurements"), "missing_count": len(missing),
            "missing": [str(g) for g in missing[:_GAPS_SHOWN]]}


def write(run_dir: Path) -> dict[str, Path]:
    run = RunDir.open(run_dir)
    meta, df = run.meta(), run.frame()
    rows = summary.per_mode(df)
    traces = run.traces()
    complete = completeness(meta, df, traces, str(run.path / "run.json"))
    for t in traces:
        t["waterfall"] = plots.waterfall(t)
    heatmaps = []
    for mode in dict.fromkeys(df["mode"]):
        for test, metric in metrics.headline_pairs(metrics.HEATMAP):
            img = plots.heatmap(df, mode, test, metric, metrics.title(test, metric))
            if img:
                heatmaps.append(img)
    refs, refs_error = reference_groups()
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        meta=meta, summary=rows, columns=summary.COLUMNS, cell=summary.cell, traces=traces,
        baseline=summary.BASELINE, borrowed=summary.borrowed_baseline(rows), references=refs,
        references_error=refs_error,
        failures=meta.get("failures", []), gates=run.gates(), complete=complete,
        started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta.get("started", 0))),
        plots={"throughput": plots.throughput(df), "cdf": plots.latency_cdf(run.samples()), "heatmaps": heatmaps},
    )
    out = {"html": run.path / "index.html", "summary": run.path / "summary.md", "csv": run.path / "table.csv"}
    out["html"].write_text(html)
    md = summary.markdown(rows, f"netbench {meta['run_id']} (mode {meta.get('mode')})")
    if complete["stopped"]:
        md += f"\n**Incomplete**: {complete['stopped']}" + (f"; last measured: {complete['last']}."
                                                            if complete["last"] else ".") + "\n"
    if complete["missing_count"]:
        md += f"\n**Not measured**: {complete['missing_count']} planned measurement(s), e.g. {complete['missing'][0]}\n"
    verdicts = [f"- {t['src']} → {t['dst']} ({t['mode']}): " + ", ".join(v["kind"] for v in t["verdicts"])
                for t in traces]
    if verdicts:
        md += "\n**Traces**\n\n" + "\n".join(verdicts) + "\n"
    if refs:  # last, under its own heading: never read as part of the measured table
        md += "\n" + reference.markdown(refs)
    out["summary"].write_text(md)
    if not out["csv"].exists():
        run.write_table()
    return out
