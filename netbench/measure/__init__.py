"""Measurements: pure parsers of tool output into tidy records, and thin drivers around them.

A driver (`latency.udp_rr`, `latency.icmp`, `throughput.iperf3`) builds the tool's command line, runs it
through a `netbench.remote.Runner` on the source node and parses what it printed; which metrics come out,
and their units, is `netbench.metrics`' catalogue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from netbench.errors import NetbenchError


class MeasureError(NetbenchError):
    """A tool ran but could not measure (refused, no reply, bad output); the text says why."""


@dataclass(frozen=True)
class Record:
    """One tidy row: what was measured, between whom, under which mode, and the value with its unit."""

    scenario: str
    src: str
    dst: str
    test: str
    metric: str
    value: float
    unit: str
    repeat: int = 0

    def as_dict(self) -> dict:
        return asdict(self)
