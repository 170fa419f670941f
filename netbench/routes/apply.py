"""`routes apply` and `routes revert` on every node through a Fleet, one Outcome per node: a Job says
what to do, a step (apply_static, apply_frr, revert_node) does it on one node."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from netbench import cluster, facts, frr
from netbench.cluster import ClusterNode
from netbench.errors import NetbenchError, UserError
from netbench.fleet import Connection, Fleet
from netbench.inventory import Inventory
from netbench.remote import script
from netbench.routes.errors import RoutesError
from netbench.routes.frrplan import frr_plan, learned, summarise_plan
from netbench.routes.iproute import MARK, describe, restore_argv, route_metric, sections, show_routes, static_routes
from netbench.routes.leases import Lease, own_lease, peer_leases
from netbench.routes.safety import refuse_unsafe, unsafe_leases
from netbench.routes.sources import required, stored_source
from netbench.routes.state import (
    KINDS,
    STATE_FILE,
    RouteState,
    now,
    read_state,
    remove_state_argv,
    revert_plan,
    write_state_commands,
)

LEARN_TIMEOUT_S = 20.0


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
    known: Mapping[str, facts.NodeFacts] = field(default_factory=dict)  # node -> facts gathered for the checks
    auth_key: str | None = field(default=None, repr=False)  # frr: OSPF's key, one per apply, the same on every node


def check_args(kind: str, routing: str | None) -> str:
    """The routing protocol `routes apply KIND` uses; UserError naming the argument that is wrong. It lives
    with Job, not in cli_routes: `apply` checks its own arguments for any caller, and the CLI calls it
    first only to name a typo before loading the inventory (the library never imports the CLI)."""
    if kind not in KINDS:
        raise UserError(f"routes apply {kind!r}: choose one of {', '.join(KINDS)}")
    if routing is not None and kind != "frr":
        raise UserError(f"--routing is for `routes apply frr`, not {kind}")
    if routing not in (None, *frr.ROUTINGS):
        raise UserError(f"--routing {routing!r}: choose one of {', '.join(frr.ROUTINGS)}")
    return routing or "ospf"


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
    known = known or job.known.get(spec.target.name)
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
    saved = tuple(route for dst in subnets for route in previous[dst] if route_metric(route) == 0)
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
                  for dst in subnets for route in previous[dst] if route_metric(route) != 0]
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


def _wait_learned(conn: Connection, routing: str, subnets: Sequence[str], present: bool,
                  timeout: float) -> set[str]:
    """The subnets whose route learned over `routing` is still missing (present) or still there at the
    deadline (frr.wait_learned, reading the node's kernel table over the connection)."""
    return frr.wait_learned(lambda: learned(conn, routing, subnets), subnets, present, timeout)


def _frr_prechecks(conn: Connection, plan: frr.FrrPlan) -> None:
    """frr.apply's own refusals, checked before the state file is written (nothing to undo then)."""
    config = frr.refuse(conn, plan)
    if f"route-map {frr.POLICY}" in config:  # revert would remove it: only what apply added may go
        raise RoutesError(f"FRR already runs netbench's configuration (route-map {frr.POLICY}) that {STATE_FILE} "
                          "does not record (the lab's frr mode?); netbench will not take it over")


def _shadowing(conn: Connection, subnets: Sequence[str]) -> tuple[dict, ...]:
    """The routes to the peers' subnets that would hide what FRR learns (flannel's vxlan or host-gw routes,
    metric 0: zebra installs nothing over a kernel route), each one restorable exactly, or RoutesError."""
    previous, _ = show_routes(conn, subnets)
    found = tuple(route for dst in subnets for route in previous.get(dst, [])
                  if route_metric(route) == 0 and str(route.get("protocol")) not in facts.ROUTING_DAEMON_PROTOS)
    for route in found:
        try:
            restore_argv(route)
        except RoutesError as exc:
            raise RoutesError(f"{exc}; netbench will not remove a route it cannot put back") from None
    return found


def apply_frr(conn: Connection, spec: ClusterNode, job: Job, out: Outcome) -> None:
    _refuse_if_applied(conn)
    known = job.known.get(spec.target.name) or node_facts(conn, spec, job.pod_network)
    own = _own(conn, spec, job, known)
    peers, skipped = peer_leases(own, job.leases)
    out.notes += skipped
    plan = frr_plan(spec.target.name, job.routing, spec.target.address, own, peers, known, job.pod_network,
                    job.auth_key)
    subnets = [lease.subnet for lease in peers]
    _frr_prechecks(conn, plan)
    # the overlay's own routes to those subnets go while FRR's are in place (saved, put back on revert)
    saved = _shadowing(conn, subnets)
    state = RouteState("frr", spec.target.name, now(), previous=saved, subnets=tuple(subnets), plan=plan)
    out.actions.append(f"save the FRR plan and the {len(saved)} route(s) it takes over in {STATE_FILE}")
    out.actions += summarise_plan(plan)
    out.actions += [shlex.join(restore_argv(route, "del")) for route in saved]
    out.notes += [f"{route['dst']}: FRR's route takes the place of {describe(route)}" for route in saved]
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
    if saved:
        result = conn.run(script([restore_argv(route, "del") for route in saved]), check=False)
        if not result.ok:
            raise RoutesError(f"removing the overlay's routes failed: {result.why}; run `netbench routes revert`")
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
        left = _wait_learned(conn, state.plan.routing, state.subnets, present=False, timeout=job.learn_timeout)
        if left:
            out.notes.append(f"routes learned over {state.plan.routing} still in the kernel: {', '.join(sorted(left))}")
        if state.previous:  # the overlay's routes FRR's took the place of
            _restore(conn, state, out)
        result = conn.run(remove_state_argv(), check=False)
        if not result.ok:
            raise RoutesError(f"FRR configuration removed, but {STATE_FILE} was not: {result.why}")
        out.status = "reverted"
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


def _restore(conn: Connection, state: RouteState, out: Outcome) -> None:
    """Put back the routes a state file saved (what FRR's took the place of): RoutesError, the state file
    kept, when one cannot go back."""
    current, _ = show_routes(conn, state.destinations)
    plan = revert_plan(state, current)
    out.actions += [shlex.join(argv) for argv in plan.commands]
    out.notes += plan.notes
    if plan.commands:
        result = conn.run(script(plan.commands), check=False)
        if not result.ok:
            raise RoutesError(f"restoring the routes failed: {result.why}; {STATE_FILE} is kept, run revert "
                              "again once fixed")
    if plan.problems:
        raise RoutesError("; ".join(plan.problems) + f" ({STATE_FILE} is kept)")


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
    with Fleet([n.target for n in nodes], accept_new_host_keys) as fleet:
        return _each(fleet, nodes, job)


def _each(fleet: Fleet, nodes: Sequence[ClusterNode], job: Job,
          failed: Mapping[str, BaseException] | None = None) -> dict[str, Outcome]:
    """The job's step on every node but those `failed` already (their error is their Outcome)."""
    specs = {n.target.name: n for n in nodes}
    step = STEPS[job.kind]
    failed = failed or {}
    results = fleet.each(lambda conn: _run_node(step, specs[conn.name], job)(conn),
                         [n.target.name for n in nodes if n.target.name not in failed])
    outcomes: dict[str, Outcome] = {}
    for name in specs:
        value = failed[name] if name in failed else results[name]
        if isinstance(value, Outcome):
            outcomes[name] = value
        else:
            message = str(value) if isinstance(value, NetbenchError) else f"{type(value).__name__}: {value}"
            outcomes[name] = Outcome(name, "failed", error=_strip_node(message, name))
    return outcomes


def apply(inv: Inventory, nodes: Sequence[ClusterNode], kind: str, routing: str | None = None, dry_run: bool = False,
          accept_new_host_keys: bool = False) -> dict[str, Outcome]:
    """Route pod subnets with `kind` (static | frr) on every node. UserError for bad input or no leases;
    UnsafeLeases (a UserError) when a lease must not become a route, raised after every node's facts are
    read and before anything changes on any node (the dry run refuses them too)."""
    routing = check_args(kind, routing)
    early = stored_source(inv)  # etcd's or the Node objects': checked before any node is reached
    job = Job(kind, str(inv.cluster.pod_network), early or {}, routing, dry_run,
              auth_key=frr.new_auth_key() if kind == "frr" else None)
    addresses = [n.address for n in inv.nodes]
    if early is not None:
        refuse_unsafe(unsafe_leases(early, job.pod_network, addresses))  # before SSH
    with Fleet([n.target for n in nodes], accept_new_host_keys) as fleet:
        known, failed = cluster.gather_facts(fleet, nodes, job.pod_network)
        leases = early if early is not None else required(inv, known, {}, failed)  # the nodes' own
        refuse_unsafe(unsafe_leases(leases, job.pod_network, addresses, known))
        outcomes = _each(fleet, nodes, replace(job, leases=leases, known=known), failed)
    for out in outcomes.values():
        out.notes[:0] = [f"leases from {leases.source}"] + [n for n in leases.notes if "not reached" in n]
    return outcomes


def revert(inv: Inventory, nodes: Sequence[ClusterNode], dry_run: bool = False,
           accept_new_host_keys: bool = False) -> dict[str, Outcome]:
    """Undo what `apply` did on every node, from each node's state file (etcd is not needed)."""
    job = Job("revert", str(inv.cluster.pod_network), dry_run=dry_run)
    return run_on_fleet(nodes, job, accept_new_host_keys)
