"""`netbench lab …` and `netbench lab fault …`: the embedded lab, and breaking it on purpose."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from netbench.cli.common import app, console
from netbench.cli.common import parse_mode_option as _mode
from netbench.errors import UserError
from netbench.flannel import Mode

lab_app = typer.Typer(no_args_is_help=True, help="The embedded lab: a real multi-node cluster in namespaces.")
app.add_typer(lab_app, name="lab")
fault_app = typer.Typer(no_args_is_help=True, help="Break the lab on purpose: for demos, training and tests.")
lab_app.add_typer(fault_app, name="fault")


@lab_app.command("up")
def lab_up(
    nodes: int = typer.Option(3, "--nodes", "-n", help="number of nodes (2-50)"),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help="udp | vxlan | host-gw | static | frr | none "
                                        "(default: udp, or vxlan for --flavour k8s)"),
    flavour: str = typer.Option("flannel", "--flavour", help="the nodes' names: flannel (docker0, eth0, "
                                "10.1.0.0/16) or k8s (cni0, ens4, 10.244.0.0/16, as kube-flannel)"),
    segments: int = typer.Option(1, help="L2 segments of the underlay; 2+ joins them with a router namespace"),
    routing: str = typer.Option("ospf", help="what the frr mode runs: ospf, or bgp (iBGP between the nodes)"),
    link_rate: Optional[str] = typer.Option(None, help="underlay rate per node, tc syntax (1gbit)"),
    link_delay: Optional[str] = typer.Option(None, help="one-way delay per node link (needs netem)"),
    link_loss: Optional[float] = typer.Option(None, help="loss per node link, percent"),
    pods: int = typer.Option(1, help="pods created on every node (nb-pod1, nb-pod2, …)"),
    seed: Optional[int] = typer.Option(None, help="seed for the lease allocation (default: random)"),
) -> None:
    """Build the lab: switch, N nodes with a pod bridge, etcd (not for --flavour k8s: its leases are in
    the Node objects, as with kube-flannel's subnet manager), sshd, pods, and the chosen data path."""
    from netbench.lab.builder import Lab
    from netbench.lab.topology import LabTopology, LinkShape

    try:
        shape = LinkShape(rate=link_rate, delay=link_delay, loss=link_loss)
        topo = LabTopology.build(nodes, _mode(mode) if mode else None, shape, pods, seed, segments, routing,
                                 flavour)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    lab = Lab()
    start = time.monotonic()
    with console.status("building the lab") as status:
        lab.up(topo, step=lambda s: status.update(Text(f"lab up: {s}")))
    console.print(Text.assemble(("lab up", "green"), f" in {time.monotonic() - start:.1f}s: {len(topo.nodes)} "
                                "nodes, mode ", (topo.mode.value, "bold"), f", flavour {topo.flavour.name}"))
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
    """Switch the running lab's data path in place (flannel's config and leases follow)."""
    from netbench.lab.builder import Lab

    lab = Lab()
    start = time.monotonic()
    lab.set_mode(_mode(mode, "MODE"), routing=routing)
    how = f" over {lab.state.routing}" if lab.mode is Mode.frr else ""
    console.print(Text.assemble("mode is now ", (lab.mode.value, "bold"), f"{how} ({time.monotonic() - start:.1f}s)"))


@lab_app.command("status")
def lab_status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Nodes, mode, leases, daemons and their health; the inventory path for other commands."""
    from netbench.lab.builder import Lab

    status = Lab().status()
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    healthy = (status["etcd"] or {"healthy": True})["healthy"] and all(
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
    console.print(Text("\nkinds: ") + Text("; ").join(Text.assemble((k, "bold"), f": {v}") for k, v in KINDS.items()))


@fault_app.command("clear")
def fault_clear() -> None:
    """Remove every injected fault: nodes are re-programmed as the mode wants them."""
    from netbench.lab.builder import Lab

    count = Lab().clear_faults()
    console.print(f"cleared {count} fault(s); the lab runs its mode as programmed")


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


def _print_status(status: dict) -> None:
    etcd = status["etcd"]
    leases = (f"etcd {etcd['endpoint']} ({'healthy' if etcd['healthy'] else 'DOWN'})" if etcd else
              f"no etcd, leases in the Node objects {status['leases']}")
    table = Table(title=f"lab: mode {status['mode']}, {leases}")
    for col in ("node", "address", "lease", "backend", "daemons", "devices", "pod routes"):
        table.add_column(col)
    for r in status["nodes"]:
        lease = r["lease"] or {}
        table.add_row(
            Text.assemble(r["name"], ("" if r["node"] else (" (down)", "red"))), r["address"], r["subnet"],
            str(lease["BackendType"]) if "BackendType" in lease else Text("no lease", "red"),
            _health(r["daemons"]), " ".join(r["devices"]) or "-", str(r["pod_routes"]),
        )
    console.print(table)
    if status.get("router"):
        r = status["router"]
        console.print(Text.assemble(f"router {r['name']} joins {status['segments']} segments at "
                                    f"{', '.join(r['addresses'])} (", _health(r["daemons"]),
                                    f"); {r['pod_routes']} pod routes"))
    if status.get("mode") == "frr":
        console.print(f"frr mode runs {status['routing']}")
    link = {k: v for k, v in status["link"].items() if v}
    if link:
        console.print(f"link shaping: {link}")
    if names := status.get("flavour"):
        console.print(f"flavour {names['name']}: bridge {names['bridge']}, underlay {names['underlay']}, "
                      f"pod network {names['pod_network']}")
    console.print(f"inventory: {status['inventory']}")


def _health(daemons: dict[str, bool]) -> Text:
    """Daemon names, green when running, red when not."""
    return Text(" ").join(Text(name, "green" if ok else "red") for name, ok in daemons.items())
