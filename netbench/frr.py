"""FRR (quagga's maintained successor) configuration that routes pod subnets, as data, applied through
vtysh on any Runner: the lab's nsenter or a real node's SSH. The lab's `frr` mode and
`netbench routes apply frr` share it, so what the lab tests is what users get.

A node redistributes exactly its own pod /24 (prefix-list + route-map), and learns its peers' over
OSPF (area 0 on the underlay) or iBGP (full mesh, or clients of a route reflector across routers).
Everything netbench adds is named NETBENCH-* or lives in one `router` block, so removing it touches
nothing else of the node's FRR configuration.

What a node learns can never hurt it, even on a segment shared with the site's routers:
- zebra installs into the kernel only routes inside the cluster's pod network (`ip protocol ospf|bgp
  route-map NETBENCH-IMPORT`, permitting the pod network `le 32`, denying the rest): a default route
  or an underlay prefix stays in FRR's RIB, never in the kernel table.
- only the cluster's own speakers become neighbours: OSPF with MD5 authentication on the underlay
  interfaces (a key shared by this cluster's plans, so a router that does not hold it forms no
  adjacency and its LSAs never enter the database), BGP with its explicit `neighbor` lines.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Literal, Sequence

from netbench.errors import InvalidValue, NetbenchError
from netbench.remote import CommandResult, Runner

Routing = Literal["ospf", "bgp"]
ROUTINGS: tuple[str, ...] = ("ospf", "bgp")
LEARNED_PROTO = {"ospf": 188, "bgp": 186}  # how zebra marks the kernel routes it installs (rt_protos)
ASN = 64512  # a private AS (RFC 6996): iBGP inside the cluster
POLICY = "NETBENCH-PODS"  # what a node redistributes: its own pod subnet
IMPORT = "NETBENCH-IMPORT"  # what zebra installs into the kernel: the pod network only
POD_NETWORK = "NETBENCH-POD-NETWORK"  # IMPORT's prefix-list
AUTH_KEY_ID = 1  # OSPF message-digest-key id
# Fast hellos: the lab converges in seconds instead of OSPF's 40 s wait timer (a LAN the user owns
# tolerates them too; `remove` puts the defaults back).
HELLO_S, DEAD_S = 1, 3
DAEMON_OF = {"ospf": "ospfd", "bgp": "bgpd"}


class FrrError(NetbenchError):
    pass


@dataclass(frozen=True)
class FrrPlan:
    """What one node (or lab router) runs. A router has no pod subnet and reflects BGP routes."""

    node: str
    routing: Routing
    router_id: str
    networks: tuple[str, ...]  # underlay networks OSPF runs on
    interfaces: tuple[str, ...]  # underlay interfaces (fast OSPF hellos)
    pod_subnet: str | None = None
    bgp_peers: tuple[str, ...] = ()
    reflector: bool = False  # peers are route-reflector clients
    asn: int = ASN
    pod_network: str | None = None  # zebra installs only routes inside it (None: no import filter)
    # OSPF's MD5 key, the same in every plan of one cluster: never shown, never part of a plan's identity
    auth_key: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise InvalidValue(f"routing {self.routing!r}: choose ospf or bgp")

    @property
    def daemon(self) -> str:
        return DAEMON_OF[self.routing]


@dataclass(frozen=True)
class FrrMember:
    """One speaker of a cluster's routing, as `plans` needs it: a node (with its pod subnet) or a router
    (pod_subnet None). `reflector_address` is where this member reaches the route reflector (the lab
    router's address on the member's segment); None: the reflector's router id."""

    name: str
    router_id: str
    networks: tuple[str, ...]  # underlay networks OSPF runs on
    interfaces: tuple[str, ...]  # underlay interfaces (fast OSPF hellos)
    pod_subnet: str | None = None
    reflector_address: str | None = None


def new_auth_key() -> str:
    """A fresh OSPF key for one cluster's plans (MD5 keys are at most 16 characters)."""
    return secrets.token_hex(8)


def plans(members: Sequence[FrrMember], routing: Routing, reflector: FrrMember | None = None,
          pod_network: str | None = None, auth_key: str | None = None) -> list[FrrPlan]:
    """The one place FRR plans are built, for the lab and for `netbench routes apply frr`: one plan per
    member, in order, each redistributing its own pod subnet and installing only routes inside
    `pod_network`. BGP peers: every other member's router id (a full mesh), or with a `reflector` only
    the reflector; the reflector's plan comes first (clients then find it listening) and has every member
    as a route-reflector client. OSPF ignores the peers and authenticates with `auth_key`."""
    built = []
    if reflector is not None:
        built.append(FrrPlan(reflector.name, routing, reflector.router_id, reflector.networks,
                             reflector.interfaces, reflector.pod_subnet,
                             tuple(m.router_id for m in members), reflector=True, pod_network=pod_network,
                             auth_key=auth_key))
    for i, member in enumerate(members):
        if reflector is not None:
            peers: tuple[str, ...] = (member.reflector_address or reflector.router_id,)
        else:
            peers = tuple(other.router_id for j, other in enumerate(members) if j != i)
        built.append(FrrPlan(member.name, routing, member.router_id, member.networks, member.interfaces,
                             member.pod_subnet, peers, pod_network=pod_network, auth_key=auth_key))
    return built


def config_lines(plan: FrrPlan) -> list[str]:
    """vtysh configuration commands (one per `-c`), from `configure terminal` on."""
    lines: list[str] = []
    if plan.pod_subnet:
        lines += [f"ip prefix-list {POLICY} seq 5 permit {plan.pod_subnet}",
                  f"route-map {POLICY} permit 10", f" match ip address prefix-list {POLICY}", "exit"]
    if plan.pod_network:  # before the routing daemon learns anything: nothing else ever reaches the kernel
        lines += [f"ip prefix-list {POD_NETWORK} seq 5 permit {plan.pod_network} le 32",
                  f"route-map {IMPORT} permit 10", f" match ip address prefix-list {POD_NETWORK}", "exit",
                  f"ip protocol {plan.routing} route-map {IMPORT}"]
    if plan.routing == "ospf":
        for ifname in plan.interfaces:
            lines += [f"interface {ifname}", f" ip ospf hello-interval {HELLO_S}",
                      f" ip ospf dead-interval {DEAD_S}"]
            if plan.auth_key:
                lines += [" ip ospf authentication message-digest",
                          f" ip ospf message-digest-key {AUTH_KEY_ID} md5 {plan.auth_key}"]
            lines.append("exit")
        lines += ["router ospf", f" ospf router-id {plan.router_id}", " timers throttle spf 0 50 1000",
                  " timers throttle lsa all 0", " timers lsa min-arrival 0"]
        lines += [f" network {net} area 0" for net in plan.networks]
        if plan.pod_subnet:
            lines.append(f" redistribute connected route-map {POLICY}")
        lines.append("exit")
    else:
        lines += [f"router bgp {plan.asn}", f" bgp router-id {plan.router_id}", " no bgp ebgp-requires-policy"]
        for peer in plan.bgp_peers:
            lines += [f" neighbor {peer} remote-as {plan.asn}", f" neighbor {peer} timers 1 3",
                      f" neighbor {peer} timers connect 1"]
        lines.append(" address-family ipv4 unicast")
        if plan.pod_subnet:
            lines.append(f"  redistribute connected route-map {POLICY}")
        if plan.reflector:
            lines += [f"  neighbor {peer} route-reflector-client" for peer in plan.bgp_peers]
        lines += [" exit-address-family", "exit"]
    return lines


def remove_chunks(plan: FrrPlan) -> list[list[str]]:
    """The commands that undo config_lines, in reverse dependency order, one vtysh call each: vtysh
    stops at the first line it refuses, and a part already gone must not keep the rest in place."""
    chunks = [["no router ospf"] if plan.routing == "ospf" else [f"no router bgp {plan.asn}"]]
    if plan.routing == "ospf":
        chunks += [[f"interface {ifname}", " no ip ospf hello-interval", " no ip ospf dead-interval",
                    " no ip ospf authentication", f" no ip ospf message-digest-key {AUTH_KEY_ID}", "exit"]
                   for ifname in plan.interfaces]
    if plan.pod_subnet:
        chunks += [[f"no route-map {POLICY}"], [f"no ip prefix-list {POLICY}"]]
    if plan.pod_network:  # the filter goes last: while a routing block exists, it stays in force
        chunks += [[f"no ip protocol {plan.routing} route-map {IMPORT}"], [f"no route-map {IMPORT}"],
                   [f"no ip prefix-list {POD_NETWORK}"]]
    return chunks


def leftovers(config: str, plan: FrrPlan) -> list[str]:
    """What of the plan a running configuration still holds."""
    head = "router ospf" if plan.routing == "ospf" else f"router bgp {plan.asn}"
    found = [head] if re.search(rf"^{head}\b", config, re.M) else []
    found += [name for name in (POLICY, IMPORT, POD_NETWORK) if re.search(rf"\b{name}\b", config)]
    if plan.routing == "ospf" and re.search(r"^ ip ospf (authentication|message-digest-key)", config, re.M):
        found.append("ip ospf authentication")
    return found


def vtysh_argv(lines: Sequence[str], write: bool = True) -> list[str]:
    """One vtysh call: configure, then (optionally) save, so the node's /etc/frr keeps it."""
    argv = ["vtysh", "-c", "configure terminal"]
    for line in lines:
        argv += ["-c", line.strip()]
    argv += ["-c", "end"]
    if write:
        argv += ["-c", "write memory"]
    return argv


def running_daemons(runner: Runner) -> list[str]:
    result = runner.run(["vtysh", "-c", "show daemons"], check=False)
    if not result.ok:
        raise FrrError(f"{runner.name}: vtysh cannot reach FRR ({result.why}); is FRR installed and running?")
    return result.stdout.split()


def running_config(runner: Runner) -> str:
    result = runner.run(["vtysh", "-c", "show running-config"], check=False)
    if not result.ok:
        raise FrrError(f"{runner.name}: vtysh show running-config failed ({result.why})")
    return result.stdout


def foreign_routing(config: str, plan: FrrPlan) -> str | None:
    """A `router ospf`/`router bgp` block, or OSPF timers on the interfaces, that netbench did not write:
    never edit someone's routing (removing ours could not give theirs back)."""
    head = "router ospf" if plan.routing == "ospf" else "router bgp"
    if re.search(rf"^{head}\b", config, re.M):
        if f"route-map {POLICY}" in config or plan.pod_subnet is None:
            return None  # ours (it redistributes through our route-map)
        return head
    if plan.routing == "ospf" and re.search(r"^ ip ospf (hello|dead)-interval", config, re.M):
        return "ip ospf hello/dead-interval"
    if plan.routing == "ospf" and re.search(r"^ ip ospf (authentication|message-digest-key)", config, re.M):
        return "ip ospf authentication"  # replacing someone's key would cut their adjacencies
    if found := re.search(rf"^ip protocol {plan.routing} route-map (?!{IMPORT}\b)\S+", config, re.M):
        return found.group(0)  # zebra holds one route-map per protocol: ours would replace it
    return None


def refuse(runner: Runner, plan: FrrPlan, adopt: bool = False) -> str:
    """Why FRR on this node must not take the plan, as an FrrError: the routing daemon is not running,
    or the node has routing configuration of its own (unless `adopt`: the lab's own nodes). Returns
    the running configuration it read."""
    daemons = running_daemons(runner)
    if plan.daemon not in daemons:
        raise FrrError(f"{runner.name}: {plan.daemon} is not running (running: {', '.join(daemons) or 'none'}); "
                       f"enable it in /etc/frr/daemons and restart FRR")
    config = running_config(runner)
    if not adopt and (block := foreign_routing(config, plan)):
        raise FrrError(f"{runner.name}: FRR already has `{block}` that netbench did not write; "
                       "netbench will not edit an existing routing configuration")
    return config


def apply(runner: Runner, plan: FrrPlan, write: bool = True, adopt: bool = False,
          checked: bool = False) -> CommandResult:
    """Configure FRR on one node, after `refuse` (unless the caller has just `checked`)."""
    if not checked:
        refuse(runner, plan, adopt)
    result = runner.run(vtysh_argv(config_lines(plan), write), check=False)
    try:
        return _checked(runner, result, "apply")
    except FrrError as exc:  # vtysh may echo the line it refused: never the key
        raise FrrError(str(exc).replace(plan.auth_key, "<key>") if plan.auth_key else str(exc)) from None


def remove(runner: Runner, plan: FrrPlan, write: bool = True) -> None:
    """Undo apply, then check: what the running configuration still holds of the plan is an error."""
    for chunk in remove_chunks(plan):
        _checked(runner, runner.run(vtysh_argv(chunk, write=False), check=False), "remove")
    left = leftovers(running_config(runner), plan)
    if left:
        raise FrrError(f"{runner.name}: FRR still has {', '.join(left)} after removing netbench's configuration")
    if write:
        _checked(runner, runner.run(["vtysh", "-c", "write memory"], check=False), "apply")


def _checked(runner: Runner, result: CommandResult, what: str) -> CommandResult:
    # vtysh may exit 0 although a line was refused: it prints the complaint ("% ...") instead. Removal
    # is idempotent: complaints about what is already gone are fine.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("%")]
    if what == "apply" and (complaints or not result.ok):
        raise FrrError(f"{runner.name}: vtysh {what} failed: {'; '.join(complaints) or result.why}")
    if what == "remove" and not result.ok and not complaints:
        raise FrrError(f"{runner.name}: vtysh {what} failed: {result.why}")
    return result


# -- what FRR has learned ------------------------------------------------------------------------

def neighbours(runner: Runner, routing: Routing) -> dict[str, str]:
    """neighbour address -> state ('Full/DR', 'Established'…), from vtysh's JSON."""
    cmd = "show ip ospf neighbor json" if routing == "ospf" else "show bgp ipv4 unicast summary json"
    out = runner.run(["vtysh", "-c", cmd], check=False).stdout
    try:
        data = json.loads(out or "{}")
    except ValueError:
        return {}
    return parse_neighbours(data, None) if routing == "ospf" else parse_neighbours(None, data)


def parse_neighbours(ospf: dict | None, bgp: dict | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for rid, entries in (ospf or {}).get("neighbors", {}).items():
        for e in entries if isinstance(entries, list) else [entries]:
            found[e.get("ifaceAddress", rid)] = e.get("nbrState") or e.get("state", "?")
    for addr, peer in (bgp or {}).get("peers", {}).items():
        found[addr] = peer.get("state", "?")
    return found


def wait_learned(read: Callable[[], set[str]], subnets: Collection[str] | None, present: bool,
                 timeout: float, interval: float = 0.5) -> set[str]:
    """The one wait for what zebra installs: poll `read` (the destinations of the kernel routes learned
    over OSPF/BGP, i.e. proto LEARNED_PROTO[routing]) until every one of `subnets` is there (present),
    or none is left (not present; subnets None: no learned route at all). Returns what is still wrong at
    the deadline (missing, or left), empty once done. Errors of `read` propagate."""
    if subnets is None and present:
        raise FrrError("wait_learned: subnets None only means 'nothing left' (present=False)")
    deadline = time.monotonic() + timeout
    while True:
        learned = read()
        if present:
            wrong = set(subnets) - learned
        else:
            wrong = set(learned) if subnets is None else learned & set(subnets)
        if not wrong or time.monotonic() >= deadline:
            return wrong
        time.sleep(interval)
