"""Trace reports for people: the hop table, differences, verdicts, path MTU; a verdict matrix."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netbench.trace.diagnose import TraceReport


def _encap(e: dict) -> str:
    if not e:
        return "plain"
    vni = f" VNI {e['vni']}" if e.get("vni") is not None else ""
    return f"{e['type']} {e['outer_src']}→{e['outer_dst']}:{e['port']}{vni}"


def _us(v: float | None) -> str:
    return f"{v:.1f}" if v is not None else "-"


def report(r: TraceReport, console: Console) -> None:
    table = Table(title=Text(f"trace {r.src} → {r.dst}: mode {r.mode}, {r.probes} probes ({r.clock})"))
    for col in ("#", "node", "interface", "dir", "seen", "t p50 µs", "t p90 µs", "step p50 µs", "encapsulation",
                "TTL", "bytes"):
        table.add_column(col, justify="right" if col in ("#", "seen", "t p50 µs", "t p90 µs", "step p50 µs",
                                                          "TTL", "bytes") else "left")
    for i, h in enumerate(r.hops):
        style = "" if h.seen == r.probes else ("yellow" if h.seen else "red")
        table.add_row(*map(Text, (str(i), h.hop.node, h.hop.iface or "?", h.hop.direction, f"{h.seen}/{r.probes}",
                                  _us(h.t_p50_us), _us(h.t_p90_us), _us(h.step_p50_us),
                                  _encap(h.encap) if h.seen else "-", str(h.ttl) if h.ttl is not None else "-",
                                  str(h.length) if h.length else "-")), style=style)
    console.print(table)
    for d in r.differences:
        console.print(Text.assemble(("difference", "yellow"), f": {d}"))
    for e in r.errors:
        console.print(Text.assemble(("icmp", "yellow"), f": {e}"))
    if r.path_mtu:
        mtu = r.path_mtu
        console.print(Text(f"path MTU: largest delivered {mtu.get('largest_delivered')} of sizes up to "
                           f"{max(mtu['sizes'])} (expected {mtu.get('expected_mtu')})"
                           + (f"; signalled: {mtu['signalled']}" if mtu.get("signalled") else "")))
    if r.lease_source:
        console.print(Text(f"leases: {r.lease_source}", "dim"))
    for v in r.verdicts:
        colour = "green" if v.ok else "red"
        where = f" [{v.node} {v.hop}]" if v.node and not v.ok else ""
        console.print(Text.assemble((v.kind, colour), f"{where}: {v.message}"))
        for e in v.evidence:
            console.print(Text(f"    {e}"))


def matrix(reports: list[TraceReport], names: list[str], failed: dict[str, str], console: Console) -> None:
    by = {(r.src, r.dst): r for r in reports}
    table = Table(title="trace --all: verdict per source (row) and destination (column)")
    table.add_column("src → dst")
    for n in names:
        table.add_column(Text(n))
    for a in names:
        cells = []
        for b in names:
            r = by.get((a, b))
            if a == b:
                cells.append("·")
            elif r is None:
                cells.append(Text("node failed", "red"))
            else:
                cells.append(Text(r.verdict.kind, "green" if r.verdict.ok else "red"))
        table.add_row(Text(a), *cells)
    console.print(table)
    for r in reports:
        v = r.verdict
        if not v.ok:
            console.print(Text.assemble(f"{r.src} → {r.dst}: ", (v.kind, "red"), f" at {v.hop}: {v.message}"))
    failures(failed, console)


def failures(failed: dict[str, str], console: Console) -> None:
    """The nodes a trace could not use, and why."""
    for name, why in failed.items():
        console.print(Text.assemble((name, "red"), f": {why}"))
