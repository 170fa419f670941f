"""The node-side state file (/run/netbench/routes.json): what one apply added and the routes it
replaced, written before anything changes; and revert, as a plan computed from it and from what the
node has now."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Sequence

from netbench import frr
from netbench.fleet import Connection
from netbench.routes.errors import RoutesError
from netbench.routes.iproute import StaticRoute, describe, restore_argv, route_key, route_metric

KINDS: tuple[str, ...] = ("static", "frr")
STATE_DIR = "/run/netbench"
STATE_FILE = f"{STATE_DIR}/routes.json"
STATE_VERSION = 1


def plan_to_dict(plan: frr.FrrPlan) -> dict:
    """The plan as the state file keeps it: without OSPF's key (revert needs none; secrets stay in FRR)."""
    data = dataclasses.asdict(plan)
    data.pop("auth_key", None)
    return data


def plan_from_dict(data: Mapping) -> frr.FrrPlan:
    names = {f.name for f in dataclasses.fields(frr.FrrPlan)}
    unknown = set(data) - names
    if unknown:
        raise RoutesError(f"FRR plan with unknown fields {', '.join(sorted(unknown))}")
    return frr.FrrPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


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


def read_state(conn: Connection) -> RouteState | None:
    result = conn.run(read_state_argv(), check=False)
    if not result.ok:
        raise RoutesError(f"cannot read {STATE_FILE}: {result.why}")
    return RouteState.from_json(result.stdout) if result.stdout.strip() else None


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
            same_slot = [r for r in others if route_metric(r) == route_metric(saved)]
            foreign = [r for r in same_slot if route_key(r) not in saved_keys]
            if foreign:
                plan.problems.append(f"{dst}: cannot put back `{describe(saved)}`: `{describe(foreign[0])}` took "
                                     "its place since apply; remove that route, then revert again")
                continue
            plan.commands.append(restore_argv(saved, "append" if same_slot else "add"))
            others.append(saved)
    return plan
