"""`netbench run`, `trace`, `doctor` and `clean`: the commands that reach the nodes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from netbench.cli.common import HOST_KEYS_HELP, INVENTORY_HELP, app, console, err
from netbench.cli.common import csv as _csv
from netbench.cli.common import pair_list as _pairs
from netbench.cli.common import parse_mode_option as _mode
from netbench.cli.lab import _lab_switch
from netbench.cli.results import _gates_exit_code, _print_gates
from netbench.errors import NetbenchError, UserError
from netbench.runlock import DEFAULT_EXPIRY
from netbench.signals import Terminated, interrupts

EXPIRY_HELP = ("seconds a node waits for this run to renew its lock before it removes the run's probes by "
               "itself (after a kill -9 or a lost SSH path)")


@contextmanager
def _signals():
    """SIGTERM and SIGHUP unwind like Ctrl-C (the probes are removed on the way out), then exit 143 or
    129; Ctrl-C exits 130 (cli.main)."""
    try:
        with interrupts():
            yield
    except Terminated as exc:
        err.print(f"terminated by {exc}")
        raise typer.Exit(exc.exit_code) from None


@app.command("run")
def run_cmd(
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    out: Path = typer.Option(Path("reports"), help="where run directories are written"),
    samples: int = typer.Option(200, help="latency samples per pair and test"),
    interval: float = typer.Option(0.01, help="seconds between latency samples"),
    size: int = typer.Option(64, help="latency payload bytes"),
    duration: float = typer.Option(2.0, help="seconds per iperf3 test"),
    repeats: int = typer.Option(3, help="iperf3 repeats per pair and test (median and spread)"),
    streams: int = typer.Option(4, help="parallel TCP streams for tcp_multi"),
    udp_rate: str = typer.Option("500M", help="iperf3 UDP target rate"),
    scenarios: Optional[str] = typer.Option(None, help="comma list: pod-pod,pod-pod-same-node,host-host"),
    tests: Optional[str] = typer.Option(None, help="comma list: udp_rr,icmp,tcp,tcp_multi,udp"),
    pairs: Optional[str] = typer.Option(None, help="only these pairs, e.g. n1:n2,n2:n3"),
    parallel_pairs: bool = typer.Option(False, help="throughput of disjoint pairs at once (independent links)"),
    trace: bool = typer.Option(False, "--trace", help="also trace every pod pair hop by hop (kept in the run)"),
    modes: Optional[str] = typer.Option(None, help="lab only: measure these data paths in turn, one run "
                                        "(e.g. udp,vxlan,host-gw,static,frr)"),
    rounds: int = typer.Option(1, help="measure every mode (the cluster as it is, without --modes) this many times, "
                               "interleaved, the host baseline in every round: a drift of the machine then hits "
                               "every mode alike"),
    sizes: Optional[str] = typer.Option(None, help="also sweep these message sizes in bytes, e.g. 64,512,1400: "
                                        "udp_rr's UDP payload, tcp's MSS (iperf3 -M, from 88)"),
    gates: Optional[Path] = typer.Option(None, help="gate rules (YAML) applied to the run at the end"),
    baseline: Optional[Path] = typer.Option(None, help="a stored run to compare against, for regression gates"),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    command_timeout: Optional[float] = typer.Option(None, help="seconds before a remote command is abandoned"),
    expiry: float = typer.Option(DEFAULT_EXPIRY, help=EXPIRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Measure latency and throughput between every pair of nodes (pods and hosts)."""
    with _signals():
        _run(**locals())


def _run(inventory, out, samples, interval, size, duration, repeats, streams, udp_rate, scenarios, tests, pairs,
         parallel_pairs, trace, modes, rounds, sizes, gates, baseline, accept_new_host_keys, command_timeout, expiry,
         as_json) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from netbench import cluster, stats
    from netbench.plan import LATENCY_TESTS, SCENARIOS, THROUGHPUT_TESTS
    from netbench.run import RunOptions, Session

    inv, nodes = cluster.load(inventory, command_timeout)
    mode_list = tuple(_mode(m, "--modes").value for m in _csv(modes))
    switch, restore = _lab_switch(inventory) if mode_list else (None, None)
    rules = None
    if gates:  # a bad rule file or baseline is said before an hour of measuring, not after
        from netbench import gates as gates_mod
        from netbench.results import RunDir
        rules = gates_mod.parse_rules(gates)
        if baseline:
            RunDir.open(baseline)
    try:
        options = RunOptions(samples=samples, interval=interval, size=size, duration=duration, repeats=repeats,
                             streams=streams, udp_rate=udp_rate, scenarios=_csv(scenarios) or SCENARIOS,
                             tests=_csv(tests) or LATENCY_TESTS + THROUGHPUT_TESTS, parallel_pairs=parallel_pairs,
                             pairs=_pairs(pairs), trace=trace, modes=mode_list, rounds=rounds,
                             sizes=_sizes(sizes), expiry=expiry)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    progress = Progress(TextColumn("{task.description:<40}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=as_json)
    from netbench.routes import sources
    session = Session(nodes, str(inv.cluster.pod_network), options, out, inv.redacted(), label=inv.cluster.name,
                      accept_new_host_keys=accept_new_host_keys,
                      read_leases=lambda node_facts: sources.table(inv, node_facts)[0])
    try:
        total = session.estimate_steps()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with progress:
        task = progress.add_task("connecting", total=total)
        session.progress = lambda what, n: progress.update(task, description=what[:40], advance=n)
        try:
            outcome = session.execute(switch)
        finally:
            if restore:
                progress.update(task, description="restoring the lab's mode")
                try:
                    restore()
                except NetbenchError as exc:  # the run stands; say what the lab is left in
                    err.print(Text.assemble(("could not put the lab back in its mode", "red"), f": {exc}"))
    df = outcome.run_dir.frame()
    # pandas and the statistics: imported once there is something to show
    from netbench.report.summary import Figures, per_size, per_test, write_intervals
    figures = Figures(df, outcome.run_dir.samples())  # each bootstrap once, for the table and intervals.csv
    rows = per_test(df, figures=figures)
    sized = per_size(outcome.run_dir.frame(sweep=True), outcome.run_dir.samples(sweep=True)) if options.sizes else []
    write_intervals(outcome.run_dir.path, df, None, figures=figures, sized=sized)
    gate_outcomes = []
    if rules:
        gate_outcomes = gates_mod.apply(outcome.run_dir.path, rules, baseline)
    if as_json:
        print(json.dumps({"run_dir": str(outcome.run_dir.path), "mode": outcome.mode, "summary": rows,
                          **({"sizes": sized} if options.sizes else {}),
                          "intervals": {"level": stats.LEVEL, "methods": stats.METHODS},
                          "failures": [f.__dict__ for f in outcome.failures], "nodes_down": outcome.nodes_down},
                         indent=2))
    else:
        if len(mode_list) > 1:
            print_mode_comparison(df, console, figures=figures)
        else:
            _print_summary(rows, outcome)
        if options.sizes:
            _print_sizes(sized, len(mode_list) > 1)
        _print_outcome(outcome)
        if gate_outcomes:
            _print_gates(gate_outcomes)
    raise typer.Exit(outcome.exit_code or _gates_exit_code(gate_outcomes))


def _sizes(text: str | None) -> tuple[int, ...]:
    """--sizes 64,512,1400 as whole bytes; RunOptions checks their range."""
    out = []
    for item in _csv(text):
        if not item.isdigit():
            raise UserError(f"--sizes: {item!r} is not a whole number of bytes (e.g. --sizes 64,512,1400)")
        out.append(int(item))
    return tuple(out)


def print_mode_comparison(df, out: Console, samples: list[dict] | None = None, figures=None) -> None:
    """Every mode side by side (pod to pod), with the host baseline and each figure's interval, then which
    differences between them are real: what the report's summary shows."""
    from netbench import stats
    from netbench.report import summary as report_summary
    rows = report_summary.per_mode(df, samples, figures=figures)
    columns = [c for c in report_summary.COLUMNS if any(r.get(c[0]) is not None for r in rows)]  # measured ones
    table = Table(title="modes side by side: pod to pod, over pairs [95% interval] (host = the underlay baseline)")
    for _, head, _ in columns:
        table.add_column(head, justify="left" if head == "mode" else "right", no_wrap=head == "mode",
                         overflow="fold")  # a narrow terminal wraps an interval, never cuts it
    for r in rows:
        table.add_row(*[report_summary.cell(r, key, fmt) for key, _, fmt in columns])
    # into a file or pipe (a CI log, `make demo | tee`), the table keeps the width it needs
    width = out.width
    if not out.is_terminal:
        out.width = max(width, 150)
    try:
        out.print(table)
    finally:
        out.width = width
    lines = report_summary.difference_lines(report_summary.differences(rows))
    if lines:
        out.print(Text.assemble(("which differences are real", "bold"),
                                " (per mode pair; the later one is the reference):"))
        for line in lines:
            out.print(f"  {line}", markup=False)
    out.print(f"{stats.described()} A figure without brackets has too few values for an interval.", style="dim",
              markup=False)


def _print_summary(rows: list[dict], outcome) -> None:
    """`netbench run`'s table: the catalogue's TABLE headline metrics with their intervals, Gbit/s also
    against host-host."""
    from netbench import metrics, stats
    from netbench.report.summary import VS_HOST, figure

    cells = []  # (heading, the text of a row)
    for m in metrics.columns(metrics.TABLE):
        cells.append((m.label, lambda r, name=m.name, spec=m.fmt: figure(r, name, spec)))
        if m.name == "gbps":
            cells.append(("vs host", lambda r: figure(r, VS_HOST, ".2f")))
    table = Table(title=f"run {outcome.run_dir.run_id}: mode {outcome.mode} (over pairs and repeats, "
                        "[95% interval])")
    for col in ("scenario", "test", "pairs", *(head for head, _ in cells)):
        table.add_column(col, justify="right" if col not in ("scenario", "test") else "left")
    for r in rows:
        table.add_row(r["scenario"], r["test"], str(r["pairs"]), *(value(r) or "-" for _, value in cells))
    console.print(table)
    console.print(f"{stats.described()} A figure without brackets has too few values for an interval "
                  "(intervals.csv in the run says why).", style="dim", markup=False)


def _print_sizes(rows: list[dict], by_mode: bool) -> None:
    """The size sweep (run --sizes), one line per mode, scenario, test and size: its headline figures with
    their intervals (every other figure of it is in intervals.csv and --json)."""
    from netbench.report.summary import sizes_table
    table = Table(title="size sweep: udp_rr payload / tcp MSS, over pairs and repeats [95% interval]")
    heads, body = sizes_table(rows, by_mode)
    for head in heads:
        table.add_column(head, justify="left" if head in ("mode", "scenario", "test") else "right")
    for line in body:
        table.add_row(*line)
    console.print(table if rows else Text("size sweep: nothing measured", "red"))


def _print_outcome(outcome) -> None:
    for f in outcome.failures:
        console.print(Text.assemble(("failed", "red"), f" {f.where} {f.what}: {f.cause}"))
    console.print(f"results: {outcome.run_dir.path}")


@app.command("trace")
def trace_cmd(
    src: Optional[str] = typer.Argument(None, help="source node"),
    dst: Optional[str] = typer.Argument(None, help="destination node"),
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    host: bool = typer.Option(False, "--host", help="node to node over the underlay instead of pod to pod"),
    all_pairs: bool = typer.Option(False, "--all", help="every ordered pair, summarised as a matrix of verdicts"),
    probes: int = typer.Option(20, help="timing probes per trace"),
    mtu: bool = typer.Option(True, "--mtu/--no-mtu", help="sweep don't-fragment probe sizes for the path MTU"),
    mode: Optional[str] = typer.Option(None, help="the mode the path should follow (default: what most nodes run)"),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    expiry: float = typer.Option(DEFAULT_EXPIRY, help=EXPIRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Follow marked probes hop by hop through both nodes; name where and why a path breaks."""
    with _signals():
        _trace(**locals())


def _trace(src, dst, inventory, host, all_pairs, probes, mtu, mode, accept_new_host_keys, expiry, as_json) -> None:
    from netbench import cluster
    from netbench.inventory import runs_pods
    from netbench.trace import render
    from netbench.trace.tracer import TraceOptions, trace_pairs

    inv, nodes = cluster.load(inventory)
    names = [n.target.name for n in nodes]
    if all_pairs:  # pod to pod: the nodes that run pods (a master has none)
        podded = [n.target.name for n in nodes if host or runs_pods(n.roles)]
        pairs = [(a, b) for a in podded for b in podded if a != b]
    elif src and dst:
        if src == dst:
            raise UserError(f"trace {src} {dst}: source and destination must be different nodes")
        pairs = [(src, dst)]
    else:
        raise UserError("trace needs SRC and DST nodes, or --all")
    if mode is not None:
        _mode(mode)
    if probes < 1:
        raise UserError("--probes: at least 1")
    if not 2 <= expiry <= 3600:
        raise UserError(f"--expiry: {expiry} is out of range (2 to 3600 s)")
    options = TraceOptions(probes=probes, mtu_sweep=mtu, host=host)
    from netbench.routes import sources
    # the leases (for the control-plane checks; None when their source cannot be read) are read from
    # etcd or the Node objects while the nodes are reached, and made into the table with their facts
    with console.status(Text("tracing")) as status, ThreadPoolExecutor(max_workers=1) as pool:
        stored = pool.submit(sources.stored, inv, 2)

        def read_leases(node_facts):
            return sources.table(inv, node_facts, stored.result())[0]
        reports, failed = trace_pairs(nodes, str(inv.cluster.pod_network), pairs, options, mode,
                                      accept_new_host_keys, progress=lambda s: status.update(Text(s)),
                                      read_leases=read_leases, expiry=expiry)
    if as_json:
        print(json.dumps({"traces": [r.as_dict() for r in reports], "nodes_failed": failed}, indent=2, default=str))
    elif all_pairs:
        render.matrix(reports, names, failed, console)
    else:
        for report in reports:
            render.report(report, console)
        render.failures(failed, console)
    bad = failed or any(not r.delivered or any(not v.ok for v in r.verdicts) for r in reports)
    raise typer.Exit(1 if bad else 0)


@app.command("doctor")
def doctor_cmd(
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Per node: tools, privileges, forwarding, interfaces, routes to every peer pod subnet, the flannel
    lease, and the data path detected, with the evidence; then every inconsistency between the nodes'
    control planes (routes, neighbours, FDB, overlay daemon), flannel's leases and the MTUs, each with
    node, evidence and a command to see it. Exit 0 when healthy, 1 when anything is found."""
    from netbench import cluster, doctor

    inv, nodes = cluster.load(inventory)
    report = doctor.examine(inv, nodes, accept_new_host_keys)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        doctor.render(report, console)
    raise typer.Exit(0 if report["healthy"] else 1)


@app.command("clean")
def clean_cmd(
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    force: bool = typer.Option(False, "--force", help="also what a live run holds (its lock, pods, processes)"),
) -> None:
    """Remove probe pods and processes dead runs left on the nodes (a live run's are kept unless --force)."""
    from netbench import cluster, probes

    _, nodes = cluster.load(inventory)
    result = probes.clean_nodes([n.target for n in nodes], accept_new_host_keys, force)
    for name, value in result.items():
        if isinstance(value, BaseException):
            console.print(Text.assemble((name, "red"), f": {value}"))
        elif "busy" in value:  # a live run's probes are its own: said, not removed
            holder = value["busy"]
            console.print(Text(f"{name}: kept: in use by run {holder.get('run_id')} of {holder.get('owner')} "
                               f"(renewed {holder.get('renewed_s_ago')} s ago); --force removes it"))
        else:
            console.print(f"{name}: removed {value['pods']} probe pods, {value['processes']} processes")
    raise typer.Exit(0 if result.ok else 1)
