"""`netbench routes apply static|frr` and `netbench routes revert`: the command-line face of
netbench.routes. Registered on the root app here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from netbench.cli.common import HOST_KEYS_HELP, INVENTORY_HELP, app, console, err

routes_app = typer.Typer(
    no_args_is_help=True,
    help="Route pod subnets without flannel's overlay (static routes or FRR), from flannel's leases; "
         "undo exactly with `routes revert`.")
app.add_typer(routes_app, name="routes")

STATUS_STYLE = {"applied": "green", "reverted": "green", "planned": "cyan", "nothing to revert": "dim",
                "failed": "red"}


@routes_app.command("apply")
def apply_cmd(
    kind: str = typer.Argument(..., help="static (kernel routes via each node's next hop) | frr (OSPF or BGP)"),
    routing: Optional[str] = typer.Option(None, help="frr only: ospf (default) | bgp (iBGP full mesh)"),
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="compute and print what would change; change nothing"),
) -> None:
    """Route every peer's pod subnet on every node, computed from flannel's leases (etcd's, the Node
    objects', or the nodes' own: cluster.leases.source). The routes
    that are replaced are saved on each node first, so `netbench routes revert` restores them exactly."""
    from netbench import cluster, routes

    protocol = routes.check_args(kind, routing)  # before the inventory: a typo is named first
    inv, nodes = cluster.load(inventory)
    what = f"{kind}" + (f" ({protocol})" if kind == "frr" else "")
    with console.status(Text(f"routes apply {what}" + (" (dry run)" if dry_run else ""))):
        outcomes = routes.apply(inv, nodes, kind, routing, dry_run, accept_new_host_keys)
    _print(f"routes apply {what}" + (": dry run, nothing changed" if dry_run else ""), outcomes)
    raise typer.Exit(0 if all(o.ok for o in outcomes.values()) else 1)


@routes_app.command("revert")
def revert_cmd(
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help=INVENTORY_HELP),
    accept_new_host_keys: bool = typer.Option(False, help=HOST_KEYS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="compute and print what would change; change nothing"),
) -> None:
    """Undo `routes apply` on every node from the node's own record: delete the routes netbench added
    (FRR: its configuration) and put back the routes they replaced."""
    from netbench import cluster, routes

    inv, nodes = cluster.load(inventory)
    with console.status(Text("routes revert" + (" (dry run)" if dry_run else ""))):
        outcomes = routes.revert(inv, nodes, dry_run, accept_new_host_keys)
    _print("routes revert" + (": dry run, nothing changed" if dry_run else ""), outcomes)
    raise typer.Exit(0 if all(o.ok for o in outcomes.values()) else 1)


def _print(title: str, outcomes: dict) -> None:
    table = Table(title=title, title_justify="left", show_lines=True)
    for col in ("node", "result", "actions", "notes"):
        table.add_column(col, overflow="fold")
    for name, o in outcomes.items():
        result = Text(o.status, STATUS_STYLE.get(o.status, "default"))
        if o.error:
            result.append(f"\n{o.error}", "red")
        table.add_row(name, result, "\n".join(o.actions) or "-", Text("\n".join(o.notes), "dim") if o.notes else "-")
    console.print(table)
    failed = [n for n, o in outcomes.items() if not o.ok]
    if failed:
        err.print(Text.assemble((f"{len(failed)} of {len(outcomes)} node(s) failed:", "red"), f" {', '.join(failed)}"))
