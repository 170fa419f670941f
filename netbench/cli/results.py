"""`netbench report`, `compare` and `gate`: what is read back from stored run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from netbench.cli.common import app, console, err
from netbench.errors import UserError


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a run directory (reports/<run-id>)")) -> None:
    """Write RUN_DIR/index.html (self-contained, charts embedded), summary.md and table.csv."""
    from netbench.report import html

    out = html.write(run_dir)
    console.print(f"report: {out['html']} ({out['html'].stat().st_size // 1024} KiB); summary: {out['summary']}")


def _statistics(level: float, min_effect: Optional[float]) -> tuple[float, Optional[float]]:
    """--level and --min-effect (percent) checked: a user error names the option."""
    if not 0.5 <= level < 1:
        raise UserError(f"--level: {level} is not a confidence level in [0.5, 1) (e.g. 0.95)")
    if min_effect is not None and not 0 <= min_effect < 1000:
        raise UserError(f"--min-effect: {min_effect} is not a percentage >= 0")
    return level, None if min_effect is None else min_effect / 100


LEVEL_HELP = "confidence level of the intervals and tests"
EFFECT_HELP = "smallest difference (percent) called better/worse (default: per metric, RTT 10, others 5)"


@app.command("compare")
def compare_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="two or more run directories; the first is the reference"),
    html: Optional[Path] = typer.Option(None, help="also write the comparison as an HTML table here"),
    level: float = typer.Option(0.95, help=LEVEL_HELP),
    min_effect: Optional[float] = typer.Option(None, help=EFFECT_HELP),
) -> None:
    """Runs side by side per mode, scenario and metric, each figure with its confidence interval: ratios to
    the first, and which differences are real (significant and at least the minimum effect). Exit 1 when
    one is worse."""
    import math

    import pandas as pd

    from netbench import stats
    from netbench.report.compare import compare, incomplete

    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories")
    level, effect = _statistics(level, min_effect)
    problems = incomplete(run_dirs)
    names, df = compare(run_dirs, level, effect)
    table = Table(title=f"compare (reference: {names[0]})")
    swept = "size" in df  # a size sweep's rows (run --sizes) name their size
    for col in ("mode", "scenario", "test", *(("size",) if swept else ()), "metric", *names):
        table.add_column(col)
    colours = {stats.BETTER: "green", stats.WORSE: "red", stats.SAME: "dim", stats.UNTESTABLE: "yellow",
               "not comparable": "yellow", "new": "yellow"}

    def known(v) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))
    for _, r in df.iterrows():
        cells = []
        for i, name in enumerate(names):
            v, ci = r.get(name), r.get(f"{name} ci")
            text = "–" if not known(v) else f"{v:.3g}" + (f" [{ci[0]:.3g}–{ci[1]:.3g}]" if known(ci) else "")
            if i and known(r.get(f"{name} ratio")):
                text += f" ×{r[f'{name} ratio']:.2f}"
            verdict = r.get(f"{name} verdict") or ""
            cells.append(Text(f"{text} {verdict}", colours.get(verdict, "default")) if verdict else text)
        size = (("" if pd.isna(r["size"]) else str(r["size"]),) if swept else ())
        table.add_row(r["mode"], r["scenario"], r["test"], *size, r["metric"], *cells)
    console.print(table)
    console.print(stats.described(level, effect), style="dim", markup=False)
    if html:
        html.write_text(df.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:.3g}"))
        console.print(f"comparison: {html}")
    for message, fatal in problems:
        err.print(Text.assemble(("cannot compare", "red") if fatal else ("note", "yellow"), f": {message}"))
    worse = any((df.get(f"{n} verdict") == stats.WORSE).any() for n in names[1:] if f"{n} verdict" in df)
    raise typer.Exit(1 if worse or any(fatal for _, fatal in problems) else 0)


@app.command("gate")
def gate_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory (reports/<run-id>)"),
    rules: Path = typer.Option(Path("configs/gates.yaml"), help="gate rules (YAML)"),
    baseline: Optional[Path] = typer.Option(None, help="a stored run to compare against, for regression rules"),
    junit: Optional[Path] = typer.Option(None, help="JUnit XML output (default RUN_DIR/gates.xml)"),
) -> None:
    """Apply gate rules to a stored run: exit 0 when all pass, 1 when one fails, 2 when unreadable."""
    from netbench import gates

    outcomes = gates.apply(run_dir, gates.parse_rules(rules), baseline, junit)
    _print_gates(outcomes)
    _print_run_notes(run_dir)
    raise typer.Exit(_gates_exit_code(outcomes))


def _gates_exit_code(outcomes) -> int:
    """1 when a rule failed, or when rules were given and none could be evaluated; else 0."""
    if outcomes and all(o.passed is None for o in outcomes):
        err.print(Text.assemble(("no rule could be evaluated", "red"), ": the run holds none of what the rules judge"))
        return 1
    return 1 if any(o.passed is False for o in outcomes) else 0


def _print_run_notes(run_dir: Path) -> None:
    """What the verdicts rest on: a run that did not finish, or one that recorded no plan to find gaps in."""
    from netbench import gaps
    from netbench.results import RunDir

    expected = gaps.Expected(RunDir.open(run_dir).meta())
    if not expected.known:
        err.print(Text.assemble(("note", "yellow"), ": run.json records no plan (written before schema 2): a "
                                "measurement the run skipped cannot be told from one it never meant to make"))
    elif note := expected.stop_note():
        err.print(Text.assemble(("note", "yellow"), f": {note}"))


def _print_gates(outcomes) -> None:
    table = Table(title="gates")
    for col in ("verdict", "rule", "mode", "result"):
        table.add_column(col)
    for o in outcomes:
        verdict = {True: Text("pass", "green"), False: Text("FAIL", "red"), None: Text("n/a", "yellow")}[o.passed]
        table.add_row(verdict, o.rule.name, o.mode, o.summary)
    console.print(table)
    for o in outcomes:
        for v in o.violations:
            console.print(Text.assemble((o.rule.name, "red"), f" ({o.mode}): {v}"))
