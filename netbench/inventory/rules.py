"""Rules of the inventory that no single field can check, and how a problem's location is named
(`nodes[2] (why-03).address`). They run on raw YAML data, so every problem of a file comes out at once."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from netbench.inventory.fields import _NAME, MIN_NODES, Loc, _ipv4_network, _same_address

# -- rules across fields and nodes -----------------------------------------------------------------------

def _cross_check(data: Any) -> list[tuple[Loc, str]]:
    """Rules no single field can check. Works on raw YAML data and skips what is malformed there (the
    field checks report that), so every problem of a file comes out in one run."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return []
    nodes = data["nodes"]
    problems: list[tuple[Loc, str]] = []
    if len(nodes) < MIN_NODES:
        problems.append((("nodes",), f"needs at least {MIN_NODES} nodes to measure a path (found {len(nodes)})"))
    cluster = data.get("cluster")
    try:
        pod_network = _ipv4_network(cluster.get("pod_network")) if isinstance(cluster, dict) else None
    except ValueError:
        pod_network = None
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    subnets: list[tuple[IPv4Network, int]] = []
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        if isinstance(name, str) and _NAME.match(name):
            if name.casefold() in names:
                first = names[name.casefold()]
                problems.append((("nodes", i, "name"), f"duplicate node name {name!r} (also nodes[{first}])"))
            else:
                names[name.casefold()] = i
        key = _same_address(node.get("address"))
        if key is not None:
            if key in addresses:
                first = addresses[key]
                problems.append((("nodes", i, "address"), f"duplicate address {node['address']!r} "
                                 f"(also {_where(('nodes', first), data)})"))
            else:
                addresses[key] = i
        try:
            subnet = _ipv4_network(node["subnet"]) if node.get("subnet") is not None else None
        except ValueError:
            subnet = None
        if subnet is None:
            continue
        if pod_network is not None and not subnet.subnet_of(pod_network):
            problems.append((("nodes", i, "subnet"), f"{subnet} is outside cluster.pod_network {pod_network}"))
            continue
        for other, j in subnets:
            if subnet.overlaps(other):
                problems.append((("nodes", i, "subnet"),
                                 f"{subnet} overlaps {other} of {_where(('nodes', j), data)}"))
                break
        subnets.append((subnet, i))
    return problems


# -- messages --------------------------------------------------------------------------------------------

def _node_label(data: Any, index: int) -> str:
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if isinstance(nodes, list) and 0 <= index < len(nodes) and isinstance(nodes[index], dict):
        name = nodes[index].get("name")
        if isinstance(name, str) and _NAME.match(name):
            return f" ({name})"
    return ""


def _where(loc: Loc, data: Any) -> str:
    """('nodes', 2, 'address') -> 'nodes[2] (why-03).address'."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if loc[:i] == ("nodes",):
                out += _node_label(data, part)
        else:
            out += ("." if out else "") + str(part)
    return out


def _line(loc: Loc, msg: str, data: Any) -> str:
    where = _where(loc, data)
    return f"{where}: {msg}" if where else msg

