"""`netbench routes`: route pod subnets on the user's own nodes instead of flannel's overlay, computed
from flannel's leases in etcd, written over SSH, and undone exactly.

Two kinds:
- `static`: on every node, one kernel route per peer lease, `ip route replace <subnet> via <next hop>
  dev <dev> proto static`. The next hop is what the node itself uses to reach the peer's PublicIP
  (`ip route get`): the peer when it is on-link, else the underlay's router, so it works across L3.
- `frr`: FRR (zebra + ospfd or bgpd) redistributes each node's own pod subnet and learns the others
  (netbench.frr builds and removes the configuration).

Nothing is lost: before changing anything, a node-side state file records what netbench adds and the
routes `replace` overwrites (flannel's host-gw or vxlan routes…), and `revert` puts those back field for
field. The state file lives in /run, like the changes it describes: kernel routes and FRR's running
configuration (netbench does not `write memory`) are gone after a reboot, and so is the state file, so
a stale record can never "restore" routes over a node that flannel has rebuilt since.

Pure parts (leases, next hops, restore commands, plans, the state file) are small functions on plain
data; `apply` and `revert` run them on every node through a Fleet, one Outcome per node.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, Sequence

from netbench import cluster, facts, flannel, frr
from netbench.cluster import ClusterNode
from netbench.errors import NetbenchError, UserError
from netbench.fleet import Connection, Fleet
from netbench.inventory import Inventory
from netbench.remote import script
from probes.etcdv3 import Etcd, EtcdError

KINDS: tuple[str, ...] = ("static", "frr")
STATE_DIR = "/run/netbench"
STATE_FILE = f"{STATE_DIR}/routes.json"
STATE_VERSION = 1
PROTO = "static"
MARK = "#netbench-section"  # separates the outputs of one script's commands
# rtnetlink protocol numbers, for `ip` output that prints a number instead of a name
PROTO_NAMES = {"2": "kernel", "3": "boot", "4": "static", "11": "zebra", "12": "bird", "16": "dhcp",
               "42": "babel", "186": "bgp", "187": "isis", "188": "ospf", "189": "rip", "192": "eigrp"}
LEARN_TIMEOUT_S = 20.0
# Route metrics `ip route add` takes as `NAME VALUE` (what `ip -j` prints under "metrics").
METRICS = ("mtu", "advmss", "window", "hoplimit", "initcwnd", "initrwnd", "reordering", "quickack",
           "fastopen_no_cookie")
# Route flags that describe state, not configuration: the kernel sets them, nobody can restore them.
STATE_FLAGS = {"linkdown", "dead", "offload", "trap", "offload_failed", "rt_offload", "rt_trap",
               "rt_offload_failed", "notify", "unresolved"}
# Fields of `ip -j route show` a restore understands; any other field makes apply refuse the node.
ROUTE_FIELDS = {"type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric", "flags", "metrics",
                "table"}


class RoutesError(NetbenchError):
    """What stops one node from being routed or restored; reported for that node."""


# -- leases ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lease:
    subnet: str  # 10.1.93.0/24
    public_ip: str
    backend: str = ""


def parse_leases(values: Mapping[str, Mapping]) -> dict[str, Lease]:
    """subnet -> lease JSON (as `lease_values` returns it) to subnet -> Lease, in subnet order. A lease
    netbench cannot read is an error, never skipped: that would leave a pod subnet silently unrouted."""
    leases: dict[str, Lease] = {}
    for subnet, data in values.items():
        try:
            net = str(ipaddress.IPv4Network(subnet))
            public_ip = str(ipaddress.IPv4Address(data["PublicIP"]))
        except (ValueError, KeyError, TypeError):
            raise UserError(f"flannel lease {subnet}: no valid subnet and PublicIP in "
                            f"{json.dumps(data)[:160]}") from None
        leases[net] = Lease(net, public_ip, str(data.get("BackendType") or ""))
    return dict(sorted(leases.items(), key=lambda kv: ipaddress.IPv4Network(kv[0])))


def lease_values(inv: Inventory, timeout: float = 3.0) -> dict[str, dict]:
    """flannel's leases as etcd holds them, read from here: subnet -> lease JSON ({"PublicIP": …,
    "BackendType": …, "BackendData": …}). UserError, naming the endpoints, when the
    inventory has no etcd, etcd does not answer, or a lease is not JSON."""
    settings = inv.cluster.etcd
    if settings is None:
        raise UserError("the inventory has no cluster.etcd: netbench reads flannel's leases (which node owns "
                        "which pod subnet) from etcd; add cluster.etcd.endpoints")
    endpoints = list(settings.endpoints)
    try:
        raw = Etcd(endpoints, timeout=timeout).get_prefix(f"{settings.prefix}/subnets/")
    except EtcdError as exc:
        raise UserError(f"cannot read flannel's leases from etcd at {_shown(endpoints)}: {exc}") from None
    values = {}
    for key, value in raw.items():
        try:
            values[flannel.subnet_from_key(key)] = json.loads(value)
        except ValueError:
            raise UserError(f"etcd at {_shown(endpoints)}: {key} is not a flannel lease ({value[:120]!r})") from None
    return values


def read_leases(inv: Inventory, timeout: float = 3.0) -> dict[str, Lease]:
    """flannel's leases from the inventory's etcd: subnet -> Lease; UserError when there are none."""
    leases = parse_leases(lease_values(inv, timeout))
    if not leases:
        etcd = inv.cluster.etcd
        raise UserError(f"etcd at {_shown(etcd.endpoints)} holds no flannel lease under {etcd.prefix}/subnets/ "
                        "(is flannel running, and is cluster.etcd.prefix right?)")
    return leases


def _shown(endpoints: Iterable[str]) -> str:
    return ", ".join(endpoints)


def own_lease(address: str, leases: Mapping[str, Lease], pod_subnet: str | None = None) -> Lease:
    """A node's own lease: the one whose PublicIP is the node's address, else the one for its pod subnet."""
    by_ip = [lease for lease in leases.values() if lease.public_ip == address]
    if len(by_ip) == 1:
        return by_ip[0]
    if pod_subnet and pod_subnet in leases and (not by_ip or leases[pod_subnet] in by_ip):
        return leases[pod_subnet]
    if by_ip:
        raise RoutesError(f"{len(by_ip)} leases name PublicIP {address} "
                          f"({', '.join(lease.subnet for lease in by_ip)}) and none is the node's pod subnet "
                          f"({pod_subnet or 'unknown'}); remove the stale lease from etcd")
    raise RoutesError(f"no flannel lease for this node: none has PublicIP {address}"
                      + (f" or subnet {pod_subnet}" if pod_subnet else ", and its pod subnet is unknown"))


def peer_leases(own: Lease, leases: Mapping[str, Lease]) -> tuple[list[Lease], list[str]]:
    """The leases a node routes to, and notes on the ones it skips (stale leases of its own address)."""
    peers, notes = [], []
    for lease in leases.values():
        if lease.subnet == own.subnet:
            continue
        if lease.public_ip == own.public_ip:
            notes.append(f"skipped {lease.subnet}: a second lease of this node's PublicIP {own.public_ip} (stale?)")
            continue
        peers.append(lease)
    return peers, notes


# -- routes as `ip -j` prints them ------------------------------------------------------------------------

def _metric(route: Mapping) -> int:
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
            _scope(route), _metric(route), route.get("prefsrc"), "onlink" in route.get("flags", []),
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
        argv += ["metric", str(_metric(route))]
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
                and _proto(route) == PROTO and _metric(route) == 0)

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


# -- frr ---------------------------------------------------------------------------------------------------

def frr_plan(name: str, routing: str, address: str, own: Lease, peers: Iterable[Lease],
             node_facts: facts.NodeFacts) -> frr.FrrPlan:
    """The node's FRR plan: OSPF area 0 on the underlay's network, or iBGP with every peer (full mesh);
    either way it redistributes exactly its own lease's subnet."""
    try:
        router_id = str(ipaddress.IPv4Address(address))
    except ValueError:  # the inventory names the node by hostname
        router_id = own.public_ip
    underlay = node_facts.underlay
    if underlay is None or underlay not in node_facts.interfaces:
        underlay = node_facts.connected(router_id)
    if underlay is None or underlay not in node_facts.interfaces:
        raise RoutesError(f"no underlay interface found (none holds {router_id}); set underlay_iface in the "
                          "inventory")
    cidrs = [ipaddress.IPv4Interface(c) for c in node_facts.interfaces[underlay].addrs]
    if not cidrs:
        raise RoutesError(f"the underlay interface {underlay} has no IPv4 address")
    mine = next((c for c in cidrs if str(c.ip) == router_id), cidrs[0])
    return frr.FrrPlan(node=name, routing=routing, router_id=router_id, networks=(str(mine.network),),
                       interfaces=(underlay,), pod_subnet=own.subnet,
                       bgp_peers=tuple(lease.public_ip for lease in peers))


def plan_to_dict(plan: frr.FrrPlan) -> dict:
    return dataclasses.asdict(plan)


def plan_from_dict(data: Mapping) -> frr.FrrPlan:
    names = {f.name for f in dataclasses.fields(frr.FrrPlan)}
    unknown = set(data) - names
    if unknown:
        raise RoutesError(f"FRR plan with unknown fields {', '.join(sorted(unknown))}")
    return frr.FrrPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def summarise_plan(plan: frr.FrrPlan) -> list[str]:
    lines = [f"FRR {plan.routing}: router-id {plan.router_id}, redistribute connected {plan.pod_subnet} "
             f"(route-map {frr.POLICY})"]
    if plan.routing == "ospf":
        lines.append(f"network {', '.join(plan.networks)} area 0 on {', '.join(plan.interfaces)} "
                     f"(hello {frr.HELLO_S}s, dead {frr.DEAD_S}s)")
    else:
        lines.append(f"iBGP AS {plan.asn} with {', '.join(plan.bgp_peers) or 'no peer'}")
    return lines


# -- the node-side state file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RouteState:
    """What one node's state file records: enough to undo the change exactly."""

    kind: str  # static | frr
    node: str
    applied_at: str  # ISO 8601, UTC
    routes: tuple[StaticRoute, ...] = ()  # static: the routes netbench added
    previous: tuple[dict, ...] = ()  # static: `ip -d -j route show` of their destinations before
    subnets: tuple[str, ...] = ()  # the peer pod subnets routed
    plan: frr.FrrPlan | None = None  # frr: the plan applied, removed by revert

    def to_json(self) -> str:
        data = {"version": STATE_VERSION, "kind": self.kind, "node": self.node, "applied_at": self.applied_at,
                "routes": [dataclasses.asdict(r) for r in self.routes], "previous": list(self.previous),
                "subnets": list(self.subnets), "frr": plan_to_dict(self.plan) if self.plan else None}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RouteState":
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise RoutesError(f"state file version {data.get('version')!r}, this netbench reads "
                                  f"{STATE_VERSION}")
            if data["kind"] not in KINDS:
                raise RoutesError(f"state file of unknown kind {data['kind']!r}")
            return cls(kind=data["kind"], node=data["node"], applied_at=data["applied_at"],
                       routes=tuple(StaticRoute(**r) for r in data.get("routes") or []),
                       previous=tuple(data.get("previous") or []), subnets=tuple(data.get("subnets") or []),
                       plan=plan_from_dict(data["frr"]) if data.get("frr") else None)
        except RoutesError as exc:
            raise RoutesError(f"{STATE_FILE}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RoutesError(f"{STATE_FILE} is not a netbench routes state file ({exc}); inspect it and "
                              "remove it by hand") from None

    @property
    def destinations(self) -> list[str]:
        return list(dict.fromkeys([r.dst for r in self.routes] + [p["dst"] for p in self.previous]))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_state_argv() -> list[str]:
    # prints the file when it exists, nothing when it does not; fails only when it cannot be read
    return ["sh", "-c", 'if [ -e "$1" ]; then cat -- "$1"; fi', "sh", STATE_FILE]


def write_state_commands() -> list[list[str]]:
    """Commands (for script()) that write the JSON on stdin to the state file, root-only, and refuse
    (noclobber) when one exists: two applies racing cannot both record."""
    return [["mkdir", "-p", "-m", "700", STATE_DIR], ["chmod", "700", STATE_DIR],
            ["sh", "-c", 'umask 077; set -C; cat > "$1"', "sh", STATE_FILE]]


def remove_state_argv() -> list[str]:
    # the directory goes too when nothing else is in it: a node left as netbench found it
    return ["sh", "-c", 'rm -f -- "$1" && { rmdir -- "$2" 2>/dev/null || true; }', "sh", STATE_FILE, STATE_DIR]


# -- revert, as a plan computed from what the node has now --------------------------------------------------

@dataclass
class RevertPlan:
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what cannot be put back: the state file stays


def revert_plan(state: RouteState, current: Mapping[str, Sequence[Mapping]]) -> RevertPlan:
    """Delete each route netbench added (only if it is still there, as netbench wrote it), then add back
    each saved route that is missing. current: destination -> its routes now (`ip -j route show exact`)."""
    plan = RevertPlan()
    for dst in state.destinations:
        others = list(current.get(dst, []))  # what stays once netbench's route is deleted
        for ours in (r for r in state.routes if r.dst == dst):
            match = next((r for r in others if ours.matches(r)), None)
            if match is None:
                plan.notes.append(f"{dst}: netbench's route is gone already")
                continue
            plan.commands.append(ours.delete_argv())
            others.remove(match)
        saved_here = [p for p in state.previous if p["dst"] == dst]
        saved_keys = {route_key(p) for p in saved_here}
        for saved in saved_here:
            if any(route_key(r) == route_key(saved) for r in others):
                plan.notes.append(f"{dst}: {describe(saved)} is in place already")
                continue
            # the kernel holds one route per destination and metric, unless more were appended to it
            same_slot = [r for r in others if _metric(r) == _metric(saved)]
            foreign = [r for r in same_slot if route_key(r) not in saved_keys]
            if foreign:
                plan.problems.append(f"{dst}: cannot put back `{describe(saved)}`: `{describe(foreign[0])}` took "
                                     "its place since apply; remove that route, then revert again")
                continue
            plan.commands.append(restore_argv(saved, "append" if same_slot else "add"))
            others.append(saved)
    return plan


# -- running on the nodes ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One node's result: what was done (or would be, in a dry run), notes, and the error if it failed."""

    node: str
    status: str  # applied | planned | reverted | nothing to revert | failed
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Job:
    kind: str  # static | frr | revert
    pod_network: str
    leases: Mapping[str, Lease] = field(default_factory=dict)
    routing: str = "ospf"
    dry_run: bool = False
    learn_timeout: float = LEARN_TIMEOUT_S


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


def read_state(conn: Connection) -> RouteState | None:
    result = conn.run(read_state_argv(), check=False)
    if not result.ok:
        raise RoutesError(f"cannot read {STATE_FILE}: {result.why}")
    return RouteState.from_json(result.stdout) if result.stdout.strip() else None


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


def node_facts(conn: Connection, spec: ClusterNode, pod_network: str) -> facts.NodeFacts:
    raw = facts.gather(conn)
    return cluster.of_node(spec, raw, pod_network)


def _refuse_if_applied(conn: Connection) -> None:
    state = read_state(conn)
    if state is not None:
        raise RoutesError(f"routes ({state.kind}) already applied at {state.applied_at}; "
                          "run `netbench routes revert` first")


def _own(conn: Connection, spec: ClusterNode, job: Job, known: facts.NodeFacts | None = None) -> Lease:
    address = spec.target.address
    pod_subnet = spec.subnet
    if pod_subnet is None and sum(lease.public_ip == address for lease in job.leases.values()) != 1:
        # none, or several (a stale one): the node's own pod subnet decides
        pod_subnet = (known or node_facts(conn, spec, job.pod_network)).pod_subnet
    return own_lease(address, job.leases, pod_subnet)


def apply_static(conn: Connection, spec: ClusterNode, job: Job, out: Outcome) -> None:
    _refuse_if_applied(conn)
    own = _own(conn, spec, job)
    peers, skipped = peer_leases(own, job.leases)
    out.notes += skipped
    if not peers:
        raise RoutesError(f"no other lease than this node's own ({own.subnet}): nothing to route")
    subnets = [lease.subnet for lease in peers]
    previous, lookups = show_routes(conn, subnets, list(dict.fromkeys(lease.public_ip for lease in peers)))
    routes = static_routes(peers, lookups)
    # `replace` overwrites only the route of the same metric (0); those must come back exactly on revert.
    # Routes of a higher metric (FRR's, a DHCP client's…) stay untouched, unused while netbench's exist.
    saved = tuple(route for dst in subnets for route in previous[dst] if _metric(route) == 0)
    for route in saved:  # refuse now what revert could not put back exactly, before anything changes
        try:
            restore_argv(route)
        except RoutesError as exc:
            raise RoutesError(f"{exc}; netbench will not override a route it cannot put back") from None
    state = RouteState("static", spec.target.name, now(), tuple(routes), saved, tuple(subnets))
    out.actions.append(f"record the routes added and the {len(saved)} route(s) they override in {STATE_FILE}")
    out.actions += [shlex.join(route.replace_argv()) for route in routes]
    out.notes += [f"{route['dst']}: replaces {describe(route)}" for route in saved]
    out.notes += [f"{route['dst']}: outranks {json.dumps(route)} (kept, unused while netbench's route exists)"
                  for dst in subnets for route in previous[dst] if _metric(route) != 0]
    by_lease = {lease.subnet: lease for lease in peers}
    out.notes += [f"{r.dst}: next hop {r.via} is a router, not the peer {by_lease[r.dst].public_ip}: it must "
                  "route the pod subnets too" for r in routes if r.via != by_lease[r.dst].public_ip]
    if job.dry_run:
        out.status = "planned"
        return
    commands = write_state_commands() + [["echo", f"{MARK} state saved"]] + [r.replace_argv() for r in routes]
    result = conn.run(script(commands), input=state.to_json(), check=False)
    if not result.ok:
        if "state saved" in sections(result.stdout):
            raise RoutesError(f"applying the routes failed: {result.why}; some may be in place: run "
                              "`netbench routes revert` to undo them")
        raise RoutesError(f"cannot write {STATE_FILE}: {result.why}; nothing was changed")
    out.status = "applied"


def _learned(conn: Connection, routing: str, subnets: Sequence[str]) -> set[str]:
    argv = ["ip", "-j", "route", "show", "table", "main", "proto", str(frr.LEARNED_PROTO[routing])]
    result = conn.run(argv, check=False)
    try:  # a failed look is not "nothing learned": revert would report a clean table it never saw
        if not result.ok:
            raise ValueError(result.why)
        return {r.get("dst") for r in json.loads(result.stdout or "[]")} & set(subnets)
    except ValueError as exc:
        raise RoutesError(f"cannot read the routes learned over {routing}: {exc}") from None


def _wait_learned(conn: Connection, routing: str, subnets: Sequence[str], present: bool,
                  timeout: float) -> set[str]:
    """Poll until the kernel has (present) or no longer has routes learned over `routing` to the subnets;
    returns the subnets still wrong at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        learned = _learned(conn, routing, subnets)
        wrong = set(subnets) - learned if present else learned
        if not wrong or time.monotonic() >= deadline:
            return wrong
        time.sleep(0.5)


def _frr_prechecks(conn: Connection, plan: frr.FrrPlan) -> None:
    """frr.apply's own refusals, checked before the state file is written (nothing to undo then)."""
    config = frr.refuse(conn, plan)
    if f"route-map {frr.POLICY}" in config:  # revert would remove it: only what apply added may go
        raise RoutesError(f"FRR already runs netbench's configuration (route-map {frr.POLICY}) that {STATE_FILE} "
                          "does not record (the lab's frr mode?); netbench will not take it over")


def apply_frr(conn: Connection, spec: ClusterNode, job: Job, out: Outcome) -> None:
    _refuse_if_applied(conn)
    known = node_facts(conn, spec, job.pod_network)
    own = _own(conn, spec, job, known)
    peers, skipped = peer_leases(own, job.leases)
    out.notes += skipped
    plan = frr_plan(spec.target.name, job.routing, spec.target.address, own, peers, known)
    subnets = [lease.subnet for lease in peers]
    for route in known.routes:
        if route.dst in subnets and route.proto not in facts.ROUTING_DAEMON_PROTOS:
            out.notes.append(f"{route.dst} is routed already ({route}); the kernel prefers that route to the "
                             "one FRR learns while it exists")
    _frr_prechecks(conn, plan)
    state = RouteState("frr", spec.target.name, now(), subnets=tuple(subnets), plan=plan)
    out.actions.append(f"save the FRR plan in {STATE_FILE}")
    out.actions += summarise_plan(plan)
    if job.dry_run:
        out.status = "planned"
        return
    result = conn.run(script(write_state_commands()), input=state.to_json(), check=False)
    if not result.ok:
        raise RoutesError(f"cannot write {STATE_FILE}: {result.why}; nothing was changed")
    try:
        frr.apply(conn, plan, write=False, checked=True)  # running configuration only: see the module docstring
    except frr.FrrError as exc:
        raise RoutesError(f"{exc}; run `netbench routes revert` to undo any part that was applied") from None
    out.status = "applied"
    missing = _wait_learned(conn, job.routing, subnets, present=True, timeout=job.learn_timeout)
    if missing:
        out.notes.append(f"not learned over {job.routing} within {job.learn_timeout:.0f}s: "
                         f"{', '.join(sorted(missing))} (peers not configured yet? see `netbench doctor`)")
    elif subnets:
        out.notes.append(f"learned {', '.join(subnets)} over {job.routing}")


def revert_node(conn: Connection, spec: ClusterNode, job: Job, out: Outcome) -> None:
    state = read_state(conn)
    if state is None:
        out.status = "nothing to revert"
        return
    out.notes.append(f"{state.kind} applied at {state.applied_at}")
    if state.kind == "frr":
        if state.plan is None:
            raise RoutesError(f"{STATE_FILE} records frr without its plan; inspect it and remove it by hand")
        out.actions.append(f"FRR: remove netbench's {state.plan.routing} configuration")
        out.actions.append(f"remove {STATE_FILE}")
        if job.dry_run:
            out.status = "planned"
            return
        frr.remove(conn, state.plan, write=False)
        result = conn.run(remove_state_argv(), check=False)
        if not result.ok:
            raise RoutesError(f"FRR configuration removed, but {STATE_FILE} was not: {result.why}")
        out.status = "reverted"
        left = _wait_learned(conn, state.plan.routing, state.subnets, present=False, timeout=job.learn_timeout)
        if left:
            out.notes.append(f"routes learned over {state.plan.routing} still in the kernel: {', '.join(sorted(left))}")
        return
    current, _ = show_routes(conn, state.destinations)
    plan = revert_plan(state, current)
    out.actions += [shlex.join(argv) for argv in plan.commands]
    out.notes += plan.notes
    if not plan.problems:
        out.actions.append(f"remove {STATE_FILE}")
    if job.dry_run:
        out.status = "planned"
        if plan.problems:
            raise RoutesError("; ".join(plan.problems))
        return
    commands = plan.commands + ([] if plan.problems else [remove_state_argv()])
    if commands:
        result = conn.run(script(commands), check=False)
        if not result.ok:
            raise RoutesError(f"restoring the routes failed: {result.why}; {STATE_FILE} is kept, run revert "
                              "again once fixed")
    if plan.problems:
        raise RoutesError("; ".join(plan.problems) + f" ({STATE_FILE} is kept)")
    out.status = "reverted"


Step = Callable[[Connection, ClusterNode, Job, Outcome], None]
STEPS: dict[str, Step] = {"static": apply_static, "frr": apply_frr, "revert": revert_node}


def _run_node(step: Step, spec: ClusterNode, job: Job) -> Callable[[Connection], Outcome]:
    def run(conn: Connection) -> Outcome:
        out = Outcome(spec.target.name, "failed")
        try:
            step(conn, spec, job, out)
        except NetbenchError as exc:
            out.error = _strip_node(str(exc), out.node)
            if out.status != "planned":
                out.status = "failed"
        return out
    return run


def _strip_node(message: str, node: str) -> str:
    return message[len(node) + 2:] if message.startswith(f"{node}: ") else message


def run_on_fleet(nodes: Sequence[ClusterNode], job: Job, accept_new_host_keys: bool = False) -> dict[str, Outcome]:
    """One Outcome per node, in inventory order; an unreachable node or a bug on one node is that node's."""
    specs = {n.target.name: n for n in nodes}
    step = STEPS[job.kind]
    with Fleet([n.target for n in nodes], accept_new_host_keys) as fleet:
        results = fleet.each(lambda conn: _run_node(step, specs[conn.name], job)(conn))
    outcomes: dict[str, Outcome] = {}
    for name, value in results.items():
        if isinstance(value, Outcome):
            outcomes[name] = value
        else:
            message = str(value) if isinstance(value, NetbenchError) else f"{type(value).__name__}: {value}"
            outcomes[name] = Outcome(name, "failed", error=_strip_node(message, name))
    return outcomes


def check_args(kind: str, routing: str | None) -> str:
    """The routing protocol `routes apply KIND` uses; UserError naming the argument that is wrong."""
    if kind not in KINDS:
        raise UserError(f"routes apply {kind!r}: choose one of {', '.join(KINDS)}")
    if routing is not None and kind != "frr":
        raise UserError(f"--routing is for `routes apply frr`, not {kind}")
    if routing not in (None, *frr.ROUTINGS):
        raise UserError(f"--routing {routing!r}: choose one of {', '.join(frr.ROUTINGS)}")
    return routing or "ospf"


def apply(inv: Inventory, nodes: Sequence[ClusterNode], kind: str, routing: str | None = None, dry_run: bool = False,
          accept_new_host_keys: bool = False) -> dict[str, Outcome]:
    """Route pod subnets with `kind` (static | frr) on every node. UserError for bad input or no leases."""
    routing = check_args(kind, routing)
    leases = read_leases(inv)
    job = Job(kind, str(inv.cluster.pod_network), leases, routing, dry_run)
    return run_on_fleet(nodes, job, accept_new_host_keys)


def revert(inv: Inventory, nodes: Sequence[ClusterNode], dry_run: bool = False,
           accept_new_host_keys: bool = False) -> dict[str, Outcome]:
    """Undo what `apply` did on every node, from each node's state file (etcd is not needed)."""
    job = Job("revert", str(inv.cluster.pod_network), dry_run=dry_run)
    return run_on_fleet(nodes, job, accept_new_host_keys)
