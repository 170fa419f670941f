from collections import Counter
from itertools import combinations

import pytest

from netbench.plan import make_plan, round_robin


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 13, 50])
def test_round_robin_covers_every_pair_once_and_no_node_twice_a_round(n):
    nodes = [f"n{i}" for i in range(n)]
    rounds = round_robin(nodes)
    pairs = [frozenset(p) for r in rounds for p in r]
    assert Counter(pairs) == Counter(frozenset(p) for p in combinations(nodes, 2))
    for r in rounds:
        members = [x for p in r for x in p]
        assert len(members) == len(set(members))
    assert len(rounds) == (n - 1 if n % 2 == 0 else n)  # the fewest rounds possible


def test_plan_schedules_each_scenario_and_direction():
    plan = make_plan(["a", "b", "c"])
    lat = Counter((s.scenario, frozenset((s.src, s.dst))) for r in plan.latency_rounds for s in r)
    assert all(v == 1 for v in lat.values())
    assert len([k for k in lat if k[0] == "pod-pod"]) == 3
    assert {k[1] for k in lat if k[0] == "pod-pod-same-node"} == {frozenset("a"), frozenset("b"), frozenset("c")}
    thr = Counter((s.scenario, s.src, s.dst) for r in plan.throughput_rounds for s in r)
    assert thr[("pod-pod", "a", "b")] == thr[("pod-pod", "b", "a")] == 1  # both directions, once
    assert all(len(r) == 1 for r in plan.throughput_rounds)  # one pair at a time by default


def test_parallel_pairs_keep_rounds_disjoint():
    plan = make_plan([f"n{i}" for i in range(6)], parallel_pairs=True)
    for r in plan.throughput_rounds:
        cross = [s for s in r if s.scenario != "pod-pod-same-node"]
        ends = [s.src for s in cross] + [s.dst for s in cross]
        assert len(ends) == len(set(ends))
    assert max(len(r) for r in plan.throughput_rounds) == 6  # same-node: all nodes at once


def test_only_pairs_restricts_the_plan():
    plan = make_plan(["a", "b", "c"], scenarios=("pod-pod",), only_pairs=[("b", "a")])
    steps = [(s.src, s.dst) for r in plan.latency_rounds + plan.throughput_rounds for s in r]
    assert sorted(steps) == [("a", "b"), ("a", "b"), ("b", "a")]
    with pytest.raises(ValueError, match="'z'"):
        make_plan(["a", "b"], only_pairs=[("a", "z")])


def test_bad_scenario_and_duplicates_are_refused():
    with pytest.raises(ValueError, match="unknown scenario 'pod-host'"):
        make_plan(["a", "b"], scenarios=("pod-host",))
    with pytest.raises(ValueError, match="unique"):
        make_plan(["a", "a"])


def test_a_500_node_plan_has_the_fewest_rounds():
    # (its compute time is printed by `make bench`, not asserted here)
    plan = make_plan([f"node-{i:03d}" for i in range(500)])
    assert len(plan.latency_rounds) == 2 * 499 + 1  # two cross scenarios, plus same-node in one round
    assert sum(map(len, plan.latency_rounds)) == 2 * 500 * 499 // 2 + 500
