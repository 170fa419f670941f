"""What a run is asked to measure and how: the options of `netbench run`, checked when they are made."""

from __future__ import annotations

import re
from dataclasses import dataclass

from netbench import runlock
from netbench.errors import InvalidValue
from netbench.plan import LATENCY_TESTS, SCENARIOS, THROUGHPUT_TESTS


@dataclass
class RunOptions:
    samples: int = 200
    interval: float = 0.01
    size: int = 64
    duration: float = 2.0
    repeats: int = 3
    streams: int = 4
    udp_rate: str = "500M"
    scenarios: tuple[str, ...] = SCENARIOS
    tests: tuple[str, ...] = LATENCY_TESTS + THROUGHPUT_TESTS
    parallel_pairs: bool = False
    pairs: list[tuple[str, str]] | None = None
    max_parallel: int = 16
    trace: bool = False  # after measuring, trace every pod-pod pair (one direction) into traces.json
    # Several data paths in one run (the lab switches between passes); host-host, which no mode
    # changes, is measured in the first pass only and is every mode's baseline.
    modes: tuple[str, ...] = ()
    expiry: float = runlock.DEFAULT_EXPIRY  # s a node waits for the run's renewal before it cleans itself

    def __post_init__(self) -> None:
        checks = [("samples", self.samples >= 1), ("interval", self.interval > 0), ("size", 16 <= self.size <= 65000),
                  ("duration", self.duration >= 1), ("repeats", self.repeats >= 1), ("streams", self.streams >= 2),
                  ("expiry", 2 <= self.expiry <= 3600)]
        for name, ok in checks:
            if not ok:
                raise InvalidValue(f"--{name}: {getattr(self, name)} is out of range")
        if not float(self.duration).is_integer():
            raise InvalidValue(f"--duration: {self.duration} is not whole seconds (iperf3 -t counts whole seconds)")
        if not re.fullmatch(r"\d+(\.\d+)?[KMGT]?(/\d+)?", self.udp_rate, re.I):
            raise InvalidValue(f"--udp-rate: {self.udp_rate!r} is not an iperf3 rate such as 500M or 1G")
        unknown = [t for t in self.tests if t not in LATENCY_TESTS + THROUGHPUT_TESTS]
        if unknown:
            raise InvalidValue(f"--tests: unknown test {unknown[0]!r} (choose from "
                             f"{', '.join(LATENCY_TESTS + THROUGHPUT_TESTS)})")

    def steps_per(self, kind: str) -> int:
        if kind == "latency":
            return len([t for t in self.tests if t in LATENCY_TESTS])
        return len([t for t in self.tests if t in THROUGHPUT_TESTS]) * self.repeats
