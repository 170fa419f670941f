"""Routes as iproute2 prints them (`ip -j route`): what makes two the same, how to describe one and
put it back exactly, the static routes netbench adds (next hop from `ip route get`), and one round trip
that reads them from a node."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from netbench.fleet import Connection
from netbench.remote import script
from netbench.routes.errors import RoutesError
from netbench.routes.leases import Lease

PROTO = "static"
MARK = "#netbench-section"  # separates the outputs of one script's commands
# rtnetlink protocol numbers, for `ip` output that prints a number instead of a name
PROTO_NAMES = {"2": "kernel", "3": "boot", "4": "static", "11": "zebra", "12": "bird", "16": "dhcp",
               "42": "babel", "186": "bgp", "187": "isis", "188": "ospf", "189": "rip", "192": "eigrp"}
# Route metrics `ip route add` takes as `NAME VALUE` (what `ip -j` prints under "metrics").
METRICS = ("mtu", "advmss", "window", "hoplimit", "initcwnd", "initrwnd", "reordering", "quickack",
           "fastopen_no_cookie")
# Route flags that describe state, not configuration: the kernel sets them, nobody can restore them.
STATE_FLAGS = {"linkdown", "dead", "offload", "trap", "offload_failed", "rt_offload", "rt_trap",
               "rt_offload_failed", "notify", "unresolved"}
# Fields of `ip -j route show` a restore understands; any other field makes apply refuse the node.
ROUTE_FIELDS = {"type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric", "flags", "metrics",
                "table"}


def route_metric(route: Mapping) -> int:
    return int(route.get("metric", 0))


def _proto(route: Mapping) -> str:
    value = str(route.get("protocol", "boot"))  # `ip` leaves out proto boot unless asked for details
    return PROTO_NAMES.get(value, value)


def _scope(route: Mapping) -> str:
    value = str(route.get("scope", "global"))  # left out when global (universe)
    return {"0": "global", "universe": "global", "253": "link", "254": "host"}.get(value, value)


def route_key(route: Mapping) -> tuple:
    """What makes two routes the same route, whichever way `ip -j` printed them (with -d or not)."""
    return (route.get("type", "unicast"), route.get("dst"), route.get("gateway"), route.get("dev"), _proto(route),
            _scope(route), route_metric(route), route.get("prefsrc"), "onlink" in route.get("flags", []),
            json.dumps(route.get("metrics", []), sort_keys=True))


def describe(route: Mapping) -> str:
    """A route the way `ip route` shows it (every field netbench would restore)."""
    if _restorable(route) is not None:
        return json.dumps(route)
    argv = restore_argv(route)[3:]
    at = argv.index("table")
    return shlex.join(argv[:at] + argv[at + 2:])


def _restorable(route: Mapping) -> str | None:
    """Why `restore_argv` could not rebuild this route exactly, or None."""
    unknown = sorted(set(route) - ROUTE_FIELDS)
    if unknown:
        return f"fields {', '.join(unknown)} (multipath, nexthop objects, encapsulation…) are not supported"
    if route.get("table", "main") != "main":
        return f"table {route['table']}"
    if not route.get("dst"):
        return "no destination"
    for entry in route.get("metrics", []):
        for name, value in (entry.items() if isinstance(entry, dict) else [("?", entry)]):
            if name not in METRICS or not isinstance(value, int):
                return f"route metric {name} {value!r}"
    return None


def restore_argv(route: Mapping, verb: str = "add") -> list[str]:
    """`ip route add` for a route saved from `ip -j route show`, every field that `ip` printed given
    explicitly (scope and proto too: `ip` would otherwise pick its own defaults)."""
    why = _restorable(route)
    if why:
        raise RoutesError(f"cannot restore {json.dumps(route)}: {why}")
    argv = ["ip", "route", verb]
    kind = route.get("type", "unicast")
    if kind != "unicast":
        argv.append(kind)
    argv.append(route["dst"])
    if route.get("gateway"):
        argv += ["via", route["gateway"]]
    if route.get("dev"):
        argv += ["dev", route["dev"]]
    argv += ["table", "main", "proto", _proto(route), "scope", _scope(route)]
    if "metric" in route:
        argv += ["metric", str(route_metric(route))]
    if route.get("prefsrc"):
        argv += ["src", route["prefsrc"]]
    for entry in route.get("metrics", []):
        for name, value in entry.items():
            argv += [name, str(value)]
    flags = set(route.get("flags", [])) - STATE_FLAGS
    argv += [flag for flag in ("onlink", "pervasive") if flag in flags]
    return argv


@dataclass(frozen=True)
class StaticRoute:
    """One route netbench adds: a peer's pod subnet via the node's next hop towards the peer."""

    dst: str
    via: str
    dev: str
    onlink: bool = False

    def _spec(self) -> list[str]:
        return [self.dst, "via", self.via, "dev", self.dev, "table", "main", "proto", PROTO] + (
            ["onlink"] if self.onlink else [])

    def replace_argv(self) -> list[str]:
        return ["ip", "route", "replace", *self._spec()]

    def delete_argv(self) -> list[str]:
        return ["ip", "route", "del", *self._spec()]

    def matches(self, route: Mapping) -> bool:
        """Whether a route of `ip -j route show` is this one (still there, as netbench wrote it)."""
        return (route.get("type", "unicast") == "unicast" and route.get("dst") == self.dst
                and route.get("gateway") == self.via and route.get("dev") == self.dev
                and _proto(route) == PROTO and route_metric(route) == 0)

    def __str__(self) -> str:
        return shlex.join(self._spec())


def next_hop(public_ip: str, lookup: Sequence[Mapping] | Mapping) -> tuple[str, str, bool]:
    """(via, dev, onlink) towards a peer from the node's `ip -j route get <PublicIP>`: the gateway the
    node uses, or the peer itself when it is directly connected."""
    entry = lookup[0] if isinstance(lookup, Sequence) and lookup else lookup
    if not isinstance(entry, Mapping) or not entry:
        raise RoutesError(f"`ip route get {public_ip}` gave no route")
    kind = entry.get("type", "unicast")
    if kind == "local":
        raise RoutesError(f"{public_ip} is an address of this node itself")
    if kind != "unicast" or not entry.get("dev"):
        raise RoutesError(f"no usable route to {public_ip} ({kind} {entry.get('dev') or ''})".strip())
    return entry.get("gateway") or public_ip, entry["dev"], "onlink" in entry.get("flags", [])


def static_routes(peers: Iterable[Lease], lookups: Mapping[str, Sequence[Mapping]]) -> list[StaticRoute]:
    """One route per peer lease, through what `ip route get <PublicIP>` said (lookups: PublicIP -> JSON)."""
    routes = []
    for lease in peers:
        try:
            via, dev, onlink = next_hop(lease.public_ip, lookups[lease.public_ip])
        except KeyError:
            raise RoutesError(f"no `ip route get` answer for {lease.public_ip} ({lease.subnet})") from None
        except RoutesError as exc:
            raise RoutesError(f"{lease.subnet} (PublicIP {lease.public_ip}): {exc}") from None
        routes.append(StaticRoute(lease.subnet, via, dev, onlink))
    return routes


def sections(stdout: str) -> dict[str, str]:
    """The output of a script whose commands are preceded by `echo MARK tag`: tag -> output."""
    found: dict[str, str] = {}
    tag = None
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            tag = line[len(MARK) + 1:]
            found[tag] = ""
        elif tag is not None:
            found[tag] += line + "\n"
    return found


def _marked(tag: str, argv: list[str]) -> list[list[str]]:
    return [["echo", f"{MARK} {tag}"], argv]


def _json(text: str, what: str) -> list:
    try:
        return json.loads(text or "[]")
    except ValueError:
        raise RoutesError(f"{what} did not print JSON (iproute2 too old for -j?): {text[:120]!r}") from None


def show_routes(conn: Connection, destinations: Sequence[str],
                lookups: Sequence[str] = ()) -> tuple[dict[str, list], dict[str, list]]:
    """One round trip: `ip -d -j route show table main exact <dst>` for each destination and
    `ip -j route get <addr>` for each address."""
    commands: list[list[str]] = []
    for dst in destinations:
        commands += _marked(f"show {dst}", ["ip", "-d", "-j", "route", "show", "table", "main", "exact", dst])
    for addr in lookups:
        commands += _marked(f"get {addr}", ["ip", "-j", "route", "get", addr])
    if not commands:
        return {}, {}
    result = conn.run(script(commands), check=False)
    found = sections(result.stdout)
    if not result.ok:
        last = list(found)[-1] if found else "the route query"
        what = f"`ip route {last}`" if found else last
        raise RoutesError(f"{what} failed: {result.why}")
    shown = {d: _json(found.get(f"show {d}", ""), f"ip route show {d}") for d in destinations}
    got = {a: _json(found.get(f"get {a}", ""), f"ip route get {a}") for a in lookups}
    return shown, got
