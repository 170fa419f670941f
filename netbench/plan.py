"""Which pairs are measured, and in which rounds: plain data computed before anything runs.

Latency: every unordered pair once, in rounds of disjoint pairs (a node is in at most one pair per
round, so pairs of a round can run at the same time without sharing a CPU or a link end). The circle
method gives N-1 rounds for even N and N rounds for odd N (one node rests each round) — the fewest
possible. Throughput: ordered pairs (both directions), one at a time by default; with
`parallel_pairs` the same disjoint rounds are used, once per direction.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import NamedTuple

from netbench.errors import InvalidValue

SCENARIOS = ("pod-pod", "pod-pod-same-node", "host-host")
LATENCY_TESTS = ("udp_rr", "icmp")
THROUGHPUT_TESTS = ("tcp", "tcp_multi", "udp")
SIZE_TESTS = ("udp_rr", "tcp")  # the tests a size sweep (run --sizes) measures at each size


def round_robin(nodes: list[str]) -> list[list[tuple[str, str]]]:
    """Rounds of disjoint unordered pairs covering every pair exactly once (circle method)."""
    players: list[str | None] = list(nodes)
    if len(players) < 2:
        return []
    if len(players) % 2:
        players.append(None)  # the node paired with None rests this round
    n = len(players)
    order = {name: i for i, name in enumerate(nodes)}
    fixed, rest = players[0], players[1:]
    rounds = []
    for _ in range(n - 1):
        line = [fixed, *rest]
        pairs = [(line[i], line[n - 1 - i]) for i in range(n // 2)]
        rounds.append([(a, b) if order[a] < order[b] else (b, a)
                       for a, b in pairs if a is not None and b is not None])
        rest = rest[-1:] + rest[:-1]
    return rounds


class Step(NamedTuple):
    # a tuple, not a dataclass: a 500-node plan holds ~750k of them and must build in well under 1 s
    scenario: str  # pod-pod | pod-pod-same-node | host-host
    src: str
    dst: str  # == src for pod-pod-same-node


@dataclass
class Plan:
    nodes: list[str]
    scenarios: tuple[str, ...] = SCENARIOS
    parallel_pairs: bool = False
    latency_rounds: list[list[Step]] = field(default_factory=list)
    throughput_rounds: list[list[Step]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(map(len, self.latency_rounds)) + sum(map(len, self.throughput_rounds))


def make_plan(nodes: list[str], scenarios: tuple[str, ...] = SCENARIOS, parallel_pairs: bool = False,
              only_pairs: list[tuple[str, str]] | None = None, podless: frozenset[str] = frozenset()) -> Plan:
    """podless: nodes whose roles run no pods (a master): host-host steps only."""
    # Hundreds of thousands of small tuples would trigger the cyclic GC over and over; none of them
    # can form a cycle, so pausing it halves the time for a 500-node plan.
    paused = gc.isenabled()
    gc.disable()
    try:
        plan = _make_plan(nodes, scenarios, parallel_pairs, only_pairs)
    finally:
        if paused:
            gc.enable()
    if podless:
        for kind in ("latency_rounds", "throughput_rounds"):
            rounds = [[s for s in r if s.scenario == "host-host" or not {s.src, s.dst} & podless]
                      for r in getattr(plan, kind)]
            setattr(plan, kind, [r for r in rounds if r])
    return plan


def _make_plan(nodes: list[str], scenarios: tuple[str, ...], parallel_pairs: bool,
               only_pairs: list[tuple[str, str]] | None) -> Plan:
    if len(set(nodes)) != len(nodes):
        raise InvalidValue("plan: node names must be unique")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise InvalidValue(f"plan: unknown scenario {unknown[0]!r} (choose from {', '.join(SCENARIOS)})")
    wanted = None
    if only_pairs:
        wanted = {frozenset(p) for p in only_pairs}
        missing = sorted({n for p in only_pairs for n in p} - set(nodes))
        if missing:
            raise InvalidValue(f"plan: pair names unknown node {missing[0]!r}")
    cross = [s for s in scenarios if s != "pod-pod-same-node"]
    rounds = [[p for p in r if wanted is None or frozenset(p) in wanted] for r in round_robin(nodes)]
    rounds = [r for r in rounds if r]
    plan = Plan(nodes=list(nodes), scenarios=tuple(scenarios), parallel_pairs=parallel_pairs)
    for scenario in cross:
        plan.latency_rounds += [[Step(scenario, a, b) for a, b in r] for r in rounds]
    if "pod-pod-same-node" in scenarios:
        same = [Step("pod-pod-same-node", n, n) for n in nodes
                if wanted is None or any(n in p for p in wanted)]
        plan.latency_rounds.append(same)  # every node at once: each uses only itself
    for scenario in cross:
        for a_to_b in (True, False):
            directed = [[Step(scenario, a, b) if a_to_b else Step(scenario, b, a) for a, b in r] for r in rounds]
            if parallel_pairs:
                plan.throughput_rounds += directed
            else:
                plan.throughput_rounds += [[s] for r in directed for s in r]
    if "pod-pod-same-node" in scenarios:
        same = [Step("pod-pod-same-node", n, n) for n in nodes if wanted is None or any(n in p for p in wanted)]
        plan.throughput_rounds += [same] if parallel_pairs else [[s] for s in same]
    return plan


def pass_order(modes: tuple[str, ...], rounds: int) -> list[tuple[int, str | None, bool]]:
    """The passes of a run as (round, mode, whether it measures the host baseline: the first pass of each
    round does), rounds counted from 1: each mode once per round, the order
    reversed every other round (udp,vxlan,frr then frr,vxlan,udp): a drift of the machine over the run then
    meets every mode at the same mean position, and the mode that ends a round begins the next, so one
    switch of the data path fewer per round. mode None: the cluster as it is (a run without --modes)."""
    order: tuple[str | None, ...] = modes or (None,)
    return [(r, m, i == 0) for r in range(1, rounds + 1) for i, m in enumerate(order if r % 2 else order[::-1])]


def planned_pairs(plan: Plan, scenario: str, test: str) -> set[tuple[str, str]]:
    """The (src, dst) pairs the plan measures `test` between in `scenario` (as records name them)."""
    rounds = plan.latency_rounds if test in LATENCY_TESTS else plan.throughput_rounds
    return {(s.src, s.dst) for r in rounds for s in r if s.scenario == scenario}


def planned_traces(nodes: list[str], only_pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The pod-pod pairs `run --trace` traces: each pair once, the node listed first as the source."""
    wanted = {frozenset(p) for p in only_pairs} if only_pairs else None
    return [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]
            if wanted is None or frozenset((a, b)) in wanted]


def plan_record(nodes: list[str], tests: tuple[str, ...], only_pairs: list[tuple[str, str]] | None,
                parallel_pairs: bool, trace: bool, passes: list[tuple[int, str | None, Plan]],
                podless: frozenset[str] = frozenset(), sizes: dict[str, list[int]] | None = None) -> dict:
    """A run's plans as run.json keeps them: the inputs of make_plan per pass (its round, and its mode; None:
    the mode the nodes are found in), not the steps, so a 500-node plan stays small; and how many
    measurements (test x step, the size sweep's, and traces, made in the first round) they add up to.
    sizes: the message sizes each swept test is measured at (SIZE_TESTS), in every pass."""
    lat = len([t for t in tests if t in LATENCY_TESTS])
    thr = len([t for t in tests if t in THROUGHPUT_TESTS])
    traced = len(planned_traces([n for n in nodes if n not in podless], only_pairs)) if trace else 0
    swept = sizes or {}
    count = sum(sum(map(len, p.latency_rounds)) * (lat + len(swept.get("udp_rr", ())))
                + sum(map(len, p.throughput_rounds)) * (thr + len(swept.get("tcp", ())))
                + (traced if "pod-pod" in p.scenarios and r == 1 else 0) for r, _, p in passes)
    return {"nodes": list(nodes), "pairs": [list(p) for p in only_pairs] if only_pairs else None,
            "parallel_pairs": parallel_pairs, "tests": list(tests), "trace": trace, "podless": sorted(podless),
            "rounds": max((r for r, _, _ in passes), default=1), "sizes": swept,
            "passes": [{"round": r, "mode": m, "scenarios": list(p.scenarios)} for r, m, p in passes],
            "measurements": count}
