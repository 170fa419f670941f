"""netbench's one command tree. The only place that prints and chooses exit codes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from netbench.cli_routes import HOST_KEYS_HELP, INVENTORY_HELP, routes_app
from netbench.errors import NetbenchError, UserError
from netbench.flannel import Mode, parse_mode

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure and trace pod-network data paths (flannel udp/vxlan/host-gw, static, FRR).")
lab_app = typer.Typer(no_args_is_help=True, help="The embedded lab: a real multi-node cluster in namespaces.")
app.add_typer(lab_app, name="lab")
app.add_typer(routes_app, name="routes")
fault_app = typer.Typer(no_args_is_help=True, help="Break the lab on purpose: for demos, training and tests.")
lab_app.add_typer(fault_app, name="fault")

console = Console()
if not console.is_terminal:
    console.width = 120  # piped or captured: wide enough that tables keep whole addresses
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _mode(value: str, option: str = "--mode") -> Mode:
    try:
        return parse_mode(value)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


@lab_app.command("up")
def lab_up(
    nodes: int = typer.Option(3, "--nodes", "-n", help="number of nodes (2-50)"),
    mode: str = typer.Option("udp", "--mode", "-m", help="udp | vxlan | host-gw | static | frr | none"),
    segments: int = typer.Option(1, help="L2 segments of the underlay; 2+ joins them with a router namespace"),
    routing: str = typer.Option("ospf", help="what the frr mode runs: ospf, or bgp (iBGP between the nodes)"),
    link_rate: Optional[str] = typer.Option(None, help="underlay rate per node, tc syntax (1gbit)"),
    link_delay: Optional[str] = typer.Option(None, help="one-way delay per node link (needs netem)"),
    link_loss: Optional[float] = typer.Option(None, help="loss per node link, percent"),
    pods: int = typer.Option(1, help="pods created on every node (nb-pod1, nb-pod2, …)"),
    seed: Optional[int] = typer.Option(None, help="seed for the lease allocation (default: random)"),
) -> None:
    """Build the lab: switch, N nodes with docker0, etcd, sshd, pods, and the chosen data path."""
    from netbench.lab.builder import Lab
    from netbench.lab.topology import LabTopology, LinkShape

    try:
        shape = LinkShape(rate=link_rate, delay=link_delay, loss=link_loss)
        topo = LabTopology.build(nodes, _mode(mode), shape, pods, seed, segments, routing)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    lab = Lab()
    start = time.monotonic()
    with console.status("building the lab") as status:
        lab.up(topo, step=lambda s: status.update(f"lab up: {s}"))
    console.print(f"[green]lab up[/] in {time.monotonic() - start:.1f}s: {len(topo.nodes)} nodes, mode "
                  f"[bold]{topo.mode.value}[/]")
    _print_status(lab.status())


@lab_app.command("down")
def lab_down() -> None:
    """Remove everything the lab created (idempotent; works after a crash or kill -9)."""
    from netbench.lab.builder import Lab

    start = time.monotonic()
    report = Lab().down()
    if report.empty:
        console.print("nothing to remove: no lab resources found")
    else:
        console.print(f"lab down in {time.monotonic() - start:.1f}s: removed {len(report.namespaces)} namespaces, "
                      f"{len(report.links)} root links, {len(report.killed)} processes")


@lab_app.command("mode")
def lab_mode(
    mode: str = typer.Argument(..., help="udp | vxlan | host-gw | static | frr | none"),
    routing: Optional[str] = typer.Option(None, help="for frr: ospf or bgp (default: what the lab was built with)"),
) -> None:
    """Switch the running lab's data path in place (etcd config and leases follow)."""
    from netbench.lab.builder import Lab

    lab = Lab()
    start = time.monotonic()
    lab.set_mode(_mode(mode, "MODE"), routing=routing)
    how = f" over {lab.state.routing}" if lab.mode is Mode.frr else ""
    console.print(f"mode is now [bold]{lab.mode.value}[/]{how} ({time.monotonic() - start:.1f}s)")


@lab_app.command("status")
def lab_status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Nodes, mode, leases, daemons and their health; the inventory path for other commands."""
    from netbench.lab.builder import Lab

    status = Lab().status()
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    healthy = status["etcd"]["healthy"] and all(
        r["node"] and all(r["daemons"].values()) for r in status["nodes"])
    raise typer.Exit(0 if healthy else 1)


@lab_app.command("exec")
def lab_exec(
    node: str = typer.Argument(..., help="node name, e.g. n2"),
    command: list[str] = typer.Argument(..., help="the command, after --"),
    pod: Optional[str] = typer.Option(None, help="run inside this pod's namespace on the node"),
) -> None:
    """Run a command on a node (its network, mount and UTS namespaces): `netbench lab exec n2 -- ip r`."""
    import subprocess

    from netbench.lab.builder import Lab

    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UserError("no command given: netbench lab exec NODE -- COMMAND…")
    proc = subprocess.run(Lab().exec_argv(node, command, pod))
    raise typer.Exit(proc.returncode)


@fault_app.command("add")
def fault_add(
    kind: str = typer.Argument(..., help="no-route | asymmetric | daemon-stop | block-encap | mtu | forwarding-off | "
                                         "rp-filter | loss | rate"),
    node: str = typer.Option(..., "--node", "-n", help="the node to break"),
    peer: Optional[str] = typer.Option(None, help="the peer it concerns (no-route, asymmetric, rp-filter)"),
    percent: Optional[float] = typer.Option(None, help="loss: percent of packets dropped"),
    rate: Optional[str] = typer.Option(None, help="rate: tc rate such as 10mbit"),
    mtu: Optional[int] = typer.Option(None, help="mtu: the lowered underlay MTU (default 1400)"),
) -> None:
    """Inject a fault into the running lab."""
    from netbench.lab.builder import Lab
    from netbench.lab.faults import Fault

    fault = Fault(kind, node, peer, percent, rate, mtu)
    Lab().add_fault(fault)
    console.print(f"fault added: {fault.describe()}")


@fault_app.command("list")
def fault_list() -> None:
    """The faults injected into the lab, and the kinds there are."""
    from netbench.lab.builder import Lab
    from netbench.lab.faults import KINDS, Fault

    lab = Lab()
    faults = lab.require_up().faults
    for f in faults:
        console.print(Fault(**f).describe())
    if not faults:
        console.print("no faults injected")
    console.print("\nkinds: " + "; ".join(f"[bold]{k}[/]: {v}" for k, v in KINDS.items()))


@fault_app.command("clear")
def fault_clear() -> None:
    """Remove every injected fault: nodes are re-programmed as the mode wants them."""
    from netbench.lab.builder import Lab

    count = Lab().clear_faults()
    console.print(f"cleared {count} fault(s); the lab runs its mode as programmed")


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _pairs(value: str | None) -> list[tuple[str, str]] | None:
    if not value:
        return None
    pairs = []
    for item in _csv(value):
        a, sep, b = item.partition(":")
        if not sep or not a or not b:
            raise UserError(f"--pairs: {item!r} is not SRC:DST")
        pairs.append((a, b))
    return pairs


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
    gates: Optional[Path] = typer.Option(None, help="gate rules (YAML) applied to the run at the end"),
    baseline: Optional[Path] = typer.Option(None, help="a stored run to compare against, for regression gates"),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    command_timeout: Optional[float] = typer.Option(None, help="seconds before a remote command is abandoned"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Measure latency and throughput between every pair of nodes (pods and hosts)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from netbench import cluster
    from netbench.plan import LATENCY_TESTS, SCENARIOS, THROUGHPUT_TESTS
    from netbench.report.summary import per_test
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
                             pairs=_pairs(pairs), trace=trace, modes=mode_list)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    progress = Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=as_json)
    session = Session(nodes, str(inv.cluster.pod_network), options, out, inv.redacted(), label=inv.cluster.name,
                      accept_new_host_keys=accept_new_host_keys)
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
                    err.print(f"[red]could not put the lab back in its mode[/]: {exc}")
    df = outcome.run_dir.frame()
    rows = per_test(df)
    gate_outcomes = []
    if rules:
        gate_outcomes = gates_mod.apply(outcome.run_dir.path, rules, baseline)
    if as_json:
        print(json.dumps({"run_dir": str(outcome.run_dir.path), "mode": outcome.mode, "summary": rows,
                          "failures": [f.__dict__ for f in outcome.failures], "nodes_down": outcome.nodes_down},
                         indent=2))
    else:
        if len(mode_list) > 1:
            print_mode_comparison(df, console)
            _print_outcome(outcome)
        else:
            _print_summary(rows, outcome)
        if gate_outcomes:
            _print_gates(gate_outcomes)
    raise typer.Exit(outcome.exit_code or _gates_exit_code(gate_outcomes))


def _lab_switch(inventory: Path | None):
    """(switch to a mode, restore the lab's mode) for --modes, which changes the data path between passes:
    netbench does that only in its own lab; on a real cluster it measures the mode in place."""
    from netbench.lab.builder import Lab, require_root
    from netbench.lab.topology import default_state_dir

    lab_inventory = default_state_dir() / "inventory.yaml"
    if inventory and (not lab_inventory.exists() or inventory.resolve() != lab_inventory.resolve()):
        raise UserError("--modes switches the data path between passes, which netbench does only in its lab; "
                        "on a cluster `netbench run` measures the mode in place (try `netbench routes apply "
                        "static|frr`, run, then `netbench routes revert`)")
    require_root()
    lab = Lab()
    original = lab.mode  # raises a clear error when no lab is up

    def switch(mode: str) -> None:
        if lab.mode.value != mode:  # the mode as on disk: set_mode reads the state afresh too
            lab.set_mode(Mode(mode))
    return switch, lambda: switch(original.value)


def print_mode_comparison(df, out: Console) -> None:
    """Every mode side by side (pod to pod), with the host baseline: what the report's summary shows."""
    from netbench.report import summary as report_summary
    rows = report_summary.per_mode(df)
    columns = [c for c in report_summary.COLUMNS if any(r.get(c[0]) is not None for r in rows)]  # measured ones
    table = Table(title="modes side by side: pod to pod, medians over pairs (host = the underlay baseline)")
    for _, head, _ in columns:
        table.add_column(head, justify="left" if head == "mode" else "right", no_wrap=head == "mode")
    for r in rows:
        table.add_row(*[report_summary.cell(r, key, fmt) for key, _, fmt in columns])
    out.print(table)


def _print_summary(rows: list[dict], outcome) -> None:
    """`netbench run`'s table: the catalogue's TABLE headline metrics, Gbit/s also against host-host."""
    from netbench import metrics
    base = {r["test"]: r for r in rows if r["scenario"] == "host-host"}

    def vs_host(r: dict) -> float | None:
        host = base.get(r["test"], {}).get("gbps")
        return r["gbps"] / host if "gbps" in r and host else None
    cells = []  # (heading, the value of a row, format spec)
    for m in metrics.columns(metrics.TABLE):
        cells.append((m.label, lambda r, name=m.name: r.get(name), m.fmt))
        if m.name == "gbps":
            cells.append(("vs host", vs_host, ".2f"))
    table = Table(title=f"run {outcome.run_dir.run_id}: mode {outcome.mode} (medians over pairs and repeats)")
    for col in ("scenario", "test", "pairs", *(head for head, _, _ in cells)):
        table.add_column(col, justify="right" if col not in ("scenario", "test") else "left")
    for r in rows:
        values = [(value(r), spec) for _, value, spec in cells]
        table.add_row(r["scenario"], r["test"], str(r["pairs"]),
                      *(format(v, spec) if v is not None else "-" for v, spec in values))
    console.print(table)
    _print_outcome(outcome)


def _print_outcome(outcome) -> None:
    for f in outcome.failures:
        console.print(f"[red]failed[/] {f.where} {f.what}: {f.cause}")
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
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Follow marked probes hop by hop through both nodes; name where and why a path breaks."""
    from netbench import cluster
    from netbench.trace import render
    from netbench.trace.tracer import TraceOptions, trace_pairs

    inv, nodes = cluster.load(inventory)
    names = [n.target.name for n in nodes]
    if all_pairs:
        pairs = [(a, b) for a in names for b in names if a != b]
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
    options = TraceOptions(probes=probes, mtu_sweep=mtu, host=host)
    with console.status("tracing") as status:
        reports, failed = trace_pairs(nodes, str(inv.cluster.pod_network), pairs, options, mode,
                                      accept_new_host_keys, progress=status.update)
    if as_json:
        print(json.dumps({"traces": [r.as_dict() for r in reports], "nodes_failed": failed}, indent=2, default=str))
    elif all_pairs:
        render.matrix(reports, names, failed, console)
    else:
        for report in reports:
            render.report(report, console)
        for name, why in failed.items():
            console.print(f"[red]{name}[/]: {why}")
    bad = failed or any(not r.delivered or any(not v.ok for v in r.verdicts) for r in reports)
    raise typer.Exit(1 if bad else 0)


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a run directory (reports/<run-id>)")) -> None:
    """Write RUN_DIR/index.html (self-contained, charts embedded), summary.md and table.csv."""
    from netbench.report import html

    out = html.write(run_dir)
    console.print(f"report: {out['html']} ({out['html'].stat().st_size // 1024} KiB); summary: {out['summary']}")


@app.command("compare")
def compare_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="two or more run directories; the first is the reference"),
    html: Optional[Path] = typer.Option(None, help="also write the comparison as an HTML table here"),
) -> None:
    """Runs side by side per mode, scenario and metric: ratios to the first, and which differences are
    beyond the run-to-run spread."""
    from netbench.report.compare import compare

    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories")
    names, df = compare(run_dirs)
    table = Table(title=f"compare (reference: {names[0]})")
    for col in ("mode", "scenario", "test", "metric", *names):
        table.add_column(col)
    colours = {"better": "green", "worse": "red", "within spread": "dim", "not comparable": "yellow", "new": "yellow"}
    for _, r in df.iterrows():
        cells = []
        for i, name in enumerate(names):
            v = r.get(name)
            text = "–" if v is None or pd.isna(v) else f"{v:.3g}"
            if i and r.get(f"{name} ratio") is not None and not pd.isna(r.get(f"{name} ratio")):
                text += f" ×{r[f'{name} ratio']:.2f}"
            verdict = r.get(f"{name} verdict") or ""
            cells.append(f"[{colours.get(verdict, 'default')}]{text} {verdict}[/]" if verdict else text)
        table.add_row(r["mode"], r["scenario"], r["test"], r["metric"], *cells)
    console.print(table)
    if html:
        html.write_text(df.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:.3g}"))
        console.print(f"comparison: {html}")
    worse = any((df.get(f"{n} verdict") == "worse").any() for n in names[1:] if f"{n} verdict" in df)
    raise typer.Exit(0 if not worse else 1)


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
    raise typer.Exit(_gates_exit_code(outcomes))


def _gates_exit_code(outcomes) -> int:
    """1 when a rule failed, or when rules were given and none could be evaluated; else 0."""
    if outcomes and all(o.passed is None for o in outcomes):
        err.print("[red]no rule could be evaluated[/]: the run holds none of what the rules judge")
        return 1
    return 1 if any(o.passed is False for o in outcomes) else 0


def _print_gates(outcomes) -> None:
    table = Table(title="gates")
    for col in ("verdict", "rule", "mode", "result"):
        table.add_column(col)
    for o in outcomes:
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[yellow]n/a[/]"}[o.passed]
        table.add_row(verdict, o.rule.name, o.mode, o.summary)
    console.print(table)
    for o in outcomes:
        for v in o.violations:
            console.print(f"[red]{o.rule.name}[/] ({o.mode}): {v}")


@app.command("doctor")
def doctor_cmd(
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Per node: tools, privileges, forwarding, interfaces, routes to every peer pod subnet, the flannel
    lease, and the data path detected, with the evidence."""
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
) -> None:
    """Remove probe pods and processes a killed run left on the nodes."""
    from netbench import cluster, probes

    _, nodes = cluster.load(inventory)
    result = probes.clean_nodes([n.target for n in nodes], accept_new_host_keys)
    for name, value in result.items():
        if isinstance(value, BaseException):
            console.print(f"[red]{name}[/]: {value}")
        else:
            console.print(f"{name}: removed {value['pods']} probe pods, {value['processes']} processes")
    raise typer.Exit(0 if result.ok else 1)


def _print_status(status: dict) -> None:
    table = Table(title=f"lab: mode {status['mode']}, etcd {status['etcd']['endpoint']} "
                        f"({'healthy' if status['etcd']['healthy'] else 'DOWN'})")
    for col in ("node", "address", "lease", "backend", "daemons", "devices", "pod routes"):
        table.add_column(col)
    for r in status["nodes"]:
        daemons = " ".join(f"{'[green]' if ok else '[red]'}{name}[/]" for name, ok in r["daemons"].items())
        lease = r["lease"] or {}
        table.add_row(
            r["name"] + ("" if r["node"] else " [red](down)[/]"), r["address"], r["subnet"],
            str(lease.get("BackendType", "[red]no lease[/]")), daemons, " ".join(r["devices"]) or "-",
            str(r["pod_routes"]),
        )
    console.print(table)
    if status.get("router"):
        r = status["router"]
        daemons = " ".join(f"{'[green]' if ok else '[red]'}{name}[/]" for name, ok in r["daemons"].items())
        console.print(f"router {r['name']} joins {status['segments']} segments at {', '.join(r['addresses'])} "
                      f"({daemons}); {r['pod_routes']} pod routes")
    if status.get("mode") == "frr":
        console.print(f"frr mode runs {status['routing']}")
    link = {k: v for k, v in status["link"].items() if v}
    if link:
        console.print(f"link shaping: {link}")
    console.print(f"inventory: {status['inventory']}")


def main() -> None:
    try:
        # standalone_mode=False returns a command's typer.Exit code instead of raising it
        code = app(standalone_mode=False)
    except NetbenchError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # click's usage errors (typer vendors click, so match by shape) show themselves; bugs keep
        # their traceback.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
