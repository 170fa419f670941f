"""The cluster as the orchestrator knows it: its nodes (from the inventory, the running lab's by default),
what each node's network looks like (facts gathered from every node at once), and the one rule that
names the mode the cluster runs.

run, trace, doctor and routes all start here: `load` the nodes, open a Fleet on their targets,
`gather_facts`, then `cluster_mode` over the verdicts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from netbench import facts
from netbench.errors import UserError
from netbench.flannel import Mode
from netbench.fleet import Fleet, SshTarget
from netbench.inventory import Inventory, load_inventory
from netbench.lab.topology import default_state_dir

# The data paths a trace knows how to expect; "none", "mixed" and "unknown" are states, not paths.
DATA_PATHS: tuple[str, ...] = tuple(m.value for m in Mode if m is not Mode.none)


@dataclass(frozen=True)
class ClusterNode:
    """One node: how to reach it (its resolved SSH target, which also decides sudo) and what the
    inventory says of its network; what it leaves out (None) is discovered on the node."""

    target: SshTarget
    subnet: str | None = None
    bridge: str | None = None
    underlay: str | None = None
    roles: tuple[str, ...] = ("node",)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def address(self) -> str:
        return self.target.address

    @classmethod
    def from_inventory(cls, inv: Inventory, name: str, command_timeout: float | None = None) -> "ClusterNode":
        node = inv.node(name)
        return cls(target=inv.ssh_for(node, command_timeout), subnet=str(node.subnet) if node.subnet else None,
                   bridge=node.bridge, underlay=node.underlay_iface, roles=tuple(node.roles))


def inventory_path(given: Path | None) -> Path:
    if given:
        return given
    lab = default_state_dir() / "inventory.yaml"
    if not lab.exists():
        raise UserError("no --inventory given and no lab is up: run `netbench lab up`, or pass "
                        "--inventory FILE (configs/seed-cluster.yaml shows the format)")
    return lab


def load(given: Path | None, command_timeout: float | None = None) -> tuple[Inventory, list[ClusterNode]]:
    inv = load_inventory(inventory_path(given))
    return inv, [ClusterNode.from_inventory(inv, n.name, command_timeout) for n in inv.nodes]


def of_node(node: ClusterNode, raw: dict, pod_network: str) -> facts.NodeFacts:
    """facts.analyse() of what a node's probe gathered; what its inventory entry says wins over discovery."""
    return facts.analyse(node.name, node.address, raw, pod_network, node.subnet, node.bridge, node.underlay)


def gather_facts(fleet: Fleet, nodes: Iterable[ClusterNode], pod_network: str,
                 progress: Callable[[str], None] | None = None,
                 ) -> tuple[dict[str, facts.NodeFacts], dict[str, BaseException]]:
    """Every node's facts in one round trip each, in parallel: (facts by node, why the others failed)."""
    chosen = {n.name: n for n in nodes}
    result = fleet.each(facts.gather, list(chosen))
    found = {}
    for name, raw in result.succeeded.items():
        found[name] = of_node(chosen[name], raw, pod_network)
        if progress:
            progress(name)
    return found, result.failed


@dataclass(frozen=True)
class ClusterMode:
    """The mode the cluster runs, from every node's verdict.

    `name` is the mode all nodes agree on, else "mixed" ("unknown" with no node): what a run records.
    `likely` is the data path most nodes run, ignoring nodes in no known path (a node whose overlay died
    still belongs to it): what a trace expects. `dissenters` names each node that differs from `likely`
    with its own mode."""

    name: str
    likely: str
    dissenters: dict[str, str] = field(default_factory=dict)
    verdicts: Mapping[str, facts.ModeVerdict] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        if not self.dissenters:
            return self.name
        odd = ", ".join(f"{n}: {m}" for n, m in sorted(self.dissenters.items()))
        return f"{self.name} (most nodes {self.likely}; {odd})"


def cluster_mode(verdicts: Mapping[str, facts.ModeVerdict]) -> ClusterMode:
    modes = {name: v.name for name, v in verdicts.items()}
    votes = Counter(modes.values())
    known = [(count, mode) for mode, count in votes.items() if mode in DATA_PATHS]
    likely = max(known)[1] if known else ("none" if votes else "unknown")
    name = next(iter(votes)) if len(votes) == 1 else ("mixed" if votes else "unknown")
    return ClusterMode(name, likely, {n: m for n, m in modes.items() if m != likely}, verdicts)


def detect(node_facts: Mapping[str, facts.NodeFacts]) -> ClusterMode:
    """Each node's mode verdict (facts.detect_modes), and the cluster's mode from them."""
    return cluster_mode(facts.detect_modes(dict(node_facts)))
