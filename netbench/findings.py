"""A finding: one thing wrong (or worth knowing) about a node's network, with what it rests on.

Checks of the control plane (leases, routes, neighbours, FDB), of firewalls and of MTUs return
findings; `doctor` lists them cluster-wide and `trace` ranks them at the hop where probes stop.
Every finding names its cause code, the node, the hop (an interface, when it has one), the
evidence lines it relied on, and a hint: the command a person runs to see it for themselves.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Finding:
    cause: str  # a stable code: lease-missing, fdb-missing, firewall-drop, mtu-mismatch, …
    node: str
    message: str  # one line for a person, naming what is wrong with the values involved
    hop: str | None = None  # the interface (or hop) it concerns, when there is one
    evidence: tuple[str, ...] = ()  # the route, lease, FDB entry, rule and counter it relied on
    hint: str = ""  # a command line to see it on the node
    peer: str | None = None  # the peer node it concerns, when there is one
    extra: dict = field(default_factory=dict, compare=False)  # machine-readable details (sizes, addresses)

    def as_dict(self) -> dict:
        return asdict(self)


# A FAILED or INCOMPLETE neighbour entry records that the last resolution failed, and stays so until
# traffic makes the kernel try again: on a path that works it is a stale memory, not a fault. These
# findings are listed, and name the cause of a path that broke there, but alone make nothing unhealthy.
ADVISORY = frozenset({"neighbour-failed", "underlay-neighbour-failed"})


def hint(*argv: str) -> str:
    """A command line built from quoted arguments, as a person would type it."""
    return shlex.join(argv)
