"""`netbench doctor`: what each node has and how it reaches its peers, and every inconsistency between
the nodes' control planes, flannel's leases and the MTUs (netbench.controlplane), as data first, then
printed. Healthy only when no node has a problem or a finding (ADVISORY ones aside: a FAILED neighbour entry)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netbench import cluster, controlplane
from netbench.cluster import ClusterNode
from netbench.findings import ADVISORY
from netbench.fleet import Connection, Fleet
from netbench.inventory import Inventory
from netbench.routes import sources
from netbench.routes.leases import Lease


def _lease_json(lease: Lease) -> dict:
    return {"PublicIP": lease.public_ip, "BackendType": lease.backend, "VtepMAC": lease.vtep_mac, "VNI": lease.vni,
            "ttl_s": lease.ttl_s, "source": lease.source, "key": lease.key}


def examine(inv: Inventory, nodes: list[ClusterNode], accept_new_host_keys: bool = False,
            transport=Connection) -> dict:
    with ThreadPoolExecutor(max_workers=1) as pool:  # etcd and the Node objects while the nodes are reached
        stored = pool.submit(sources.stored, inv, 2)
        with Fleet([n.target for n in nodes], accept_new_host_keys, transport=transport) as fleet:
            # privileged: uid 0 when root or `sudo -n` works, else sudo is off
            node_facts, failed = cluster.gather_facts(fleet, nodes, str(inv.cluster.pod_network))
        leases, lease_source = sources.table(inv, node_facts, stored.result(), failed)
    report: dict = {"nodes": {}, "healthy": not failed, "lease_source": lease_source,
                    "lease_notes": leases.notes if leases is not None else [],
                    "leases_compared": sorted(leases.compared) if leases is not None else [],
                    "leases": {s: _lease_json(lease) for s, lease in leases.items()} if leases is not None else None}
    mode = cluster.detect(node_facts)
    unreached = {n.address for n in nodes if n.name in failed}
    findings = [f for f in controlplane.check(node_facts, leases, mode.likely)
                if f.extra.get("lease_ip") not in unreached or f.cause != "lease-stale"]  # its owner did not answer
    report["findings"] = [f.as_dict() for f in findings]
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
            if route is None and mode.likely not in cluster.DATA_PATHS:  # else a finding names it
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
            "findings": [x.as_dict() for x in findings if x.node == name],
        }
        if problems or any(x["cause"] not in ADVISORY for x in report["nodes"][name]["findings"]):
            report["healthy"] = False
    report["mode"] = mode.name
    report["mode_dissenters"] = mode.dissenters
    return report


def _t(value, style: str = "") -> Text:
    """A node-supplied value as rich Text: printed as it is, never read as markup ([red], [/])."""
    return Text(str(value), style)


def render(report: dict, console: Console) -> None:
    for name, node in report["nodes"].items():
        if "error" in node:
            console.print(Text.assemble((name, "bold red"), f": {node['error']}"))
            continue
        table = Table(title=Text.assemble(f"{name} ({node['hostname']}, {node['address']}): mode ",
                                          (str(node["mode"]), "bold")), show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        table.add_row("tools", Text(" ").join(_t(tool, "green" if path else "red")
                                              for tool, path in node["tools"].items()))
        table.add_row("privileges", "root" if node["uid"] == 0 else ("sudo -n" if node["privileged"] else
                                                                      _t("none", "red")))
        table.add_row("forwarding", "on" if node["ip_forward"] else _t("off", "red"))
        table.add_row("interfaces", _t("\n".join(f"{i['name']} ({i['kind']}) mtu {i['mtu']} {' '.join(i['addrs'])}"
                                                 for i in node["interfaces"])))
        table.add_row("pod subnet", _t(f"{node['pod_subnet']} on {node['bridge']}"))
        env = node["subnet_env"]
        table.add_row("subnet.env", _t(f"{env['subnet']} mtu {env['mtu']}") if env else "-")
        lease = node["lease"]
        table.add_row("lease", _t(f"PublicIP {lease['PublicIP']} backend {lease['BackendType'] or '-'}"
                                  f" ({lease['source']})") if lease else "-")
        table.add_row("peer routes", Text("\n").join(Text.assemble(f"{p}: ", str(r) if r else ("none", "red"))
                                                      for p, r in node["peer_routes"].items()))
        table.add_row("evidence", _t("\n".join(map(str, node["evidence"]))))
        if node["problems"]:
            table.add_row(_t("problems", "red"), _t("\n".join(map(str, node["problems"]))))
        console.print(table)
        for finding in node.get("findings", []):
            console.print(Text.assemble("  ", (f"{finding['node']}: {finding['cause']}", "red"),
                                        f": {finding['message']}"))
            for line in finding["evidence"]:
                console.print(_t(f"      {line}"))
            if finding["hint"]:
                console.print(Text.assemble("      see: ", (str(finding["hint"]), "bold")))
    odd = ", ".join(f"{n}: {m}" for n, m in sorted(report.get("mode_dissenters", {}).items()))
    count = len(report.get("findings", []))
    compared = report.get("leases_compared") or []
    console.print(_t(f"leases: {report.get('lease_source', '-')}"
                     + (f"; checked against {', '.join(compared)}" if compared else "")))
    for note in report.get("lease_notes") or []:
        console.print(_t(f"  {note}"))
    console.print(Text.assemble("cluster mode: ", (str(report["mode"]), "bold"),
                                f" (differing: {odd})" if odd else "", "; ",
                                ("healthy", "green") if report["healthy"] else ("problems found", "red"),
                                "" if report["healthy"] else f" ({count} finding{'s' * (count != 1)})"))
