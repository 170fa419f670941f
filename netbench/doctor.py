"""`netbench doctor`: what each node has and how it reaches its peers, as data first, then printed."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from netbench import cluster, routes
from netbench.cluster import ClusterNode
from netbench.errors import UserError
from netbench.fleet import Connection, Fleet
from netbench.inventory import Inventory


def _leases(inv: Inventory) -> dict[str, dict] | None:
    """flannel's leases straight from etcd when it answers from here (the lab's does); else None."""
    if not inv.cluster.etcd:
        return None
    try:
        return routes.lease_values(inv, timeout=2)
    except UserError:
        return None


def examine(inv: Inventory, nodes: list[ClusterNode], accept_new_host_keys: bool = False,
            transport=Connection) -> dict:
    with Fleet([n.target for n in nodes], accept_new_host_keys, transport=transport) as fleet:
        # privileged: uid 0 when root or `sudo -n` works, else sudo is off
        node_facts, failed = cluster.gather_facts(fleet, nodes, str(inv.cluster.pod_network))
    report: dict = {"nodes": {}, "healthy": not failed, "leases": _leases(inv)}
    mode = cluster.detect(node_facts)
    for name in (n.name for n in nodes):
        if name in failed:
            report["nodes"][name] = {"error": str(failed[name])}
            continue
        f, verdict = node_facts[name], mode.verdicts[name]
        problems = []
        if f.missing_tools:
            problems.append(f"missing tools: {', '.join(f.missing_tools)}")
        if not f.ip_forward:
            problems.append("net.ipv4.ip_forward is 0: the node will not forward pod traffic")
        privileged = f.uid == 0
        if not privileged:
            problems.append(f"runs as uid {f.uid} without sudo (ssh.sudo: never): probe pods cannot be created")
        if not f.pod_subnet:
            problems.append("no pod subnet found (no subnet.env, no bridge in the pod network)")
        for peer, route in verdict.peer_routes.items():
            if route is None:
                problems.append(f"no route to {peer}'s pod subnet {node_facts[peer].pod_subnet}")
        interesting = [i for i in f.interfaces.values()
                       if i.name in (f.bridge, f.underlay) or i.kind in ("tun", "vxlan")]
        report["nodes"][name] = {
            "hostname": f.hostname, "address": f.address, "uid": f.uid, "privileged": privileged,
            "tools": f.tools, "ip_forward": f.ip_forward, "rp_filter": f.rp_filter,
            "bridge": f.bridge, "underlay": f.underlay, "pod_subnet": f.pod_subnet,
            "interfaces": [{"name": i.name, "kind": i.kind, "mtu": i.mtu, "up": i.up, "addrs": i.addrs}
                           for i in interesting],
            "peer_routes": {p: (str(r) if r else None) for p, r in verdict.peer_routes.items()},
            "subnet_env": f.subnet_env.__dict__ if f.subnet_env else None,
            "lease": (report["leases"] or {}).get(f.pod_subnet) if f.pod_subnet else None,
            "mode": verdict.name, "evidence": verdict.evidence,
            "learned_routes": f.learned_summary(),
            "problems": problems,
        }
        if problems:
            report["healthy"] = False
    report["mode"] = mode.name
    report["mode_dissenters"] = mode.dissenters
    return report


def render(report: dict, console: Console) -> None:
    for name, node in report["nodes"].items():
        if "error" in node:
            console.print(f"[bold red]{name}[/]: {node['error']}")
            continue
        table = Table(title=f"{name} ({node['hostname']}, {node['address']}): mode [bold]{node['mode']}[/]",
                      show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        tools = " ".join(f"{'[green]' if path else '[red]'}{tool}[/]" for tool, path in node["tools"].items())
        table.add_row("tools", tools)
        privileges = "root" if node["uid"] == 0 else ("sudo -n" if node["privileged"] else "[red]none[/]")
        table.add_row("privileges", privileges)
        table.add_row("forwarding", "on" if node["ip_forward"] else "[red]off[/]")
        table.add_row("interfaces", "\n".join(f"{i['name']} ({i['kind']}) mtu {i['mtu']} {' '.join(i['addrs'])}"
                                              for i in node["interfaces"]))
        table.add_row("pod subnet", f"{node['pod_subnet']} on {node['bridge']}")
        env = node["subnet_env"]
        table.add_row("subnet.env", f"{env['subnet']} mtu {env['mtu']}" if env else "-")
        lease = node["lease"]
        table.add_row("lease", f"PublicIP {lease['PublicIP']} backend {lease['BackendType']}" if lease else "-")
        table.add_row("peer routes", "\n".join(f"{p}: {r or '[red]none[/]'}" for p, r in node["peer_routes"].items()))
        table.add_row("evidence", "\n".join(node["evidence"]))
        if node["problems"]:
            table.add_row("[red]problems[/]", "\n".join(node["problems"]))
        console.print(table)
    odd = ", ".join(f"{n}: {m}" for n, m in sorted(report.get("mode_dissenters", {}).items()))
    console.print(f"cluster mode: [bold]{report['mode']}[/]" + (f" (differing: {odd})" if odd else "") + "; "
                  + ("[green]healthy[/]" if report["healthy"] else "[red]problems found[/]"))
