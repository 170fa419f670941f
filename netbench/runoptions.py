"""What a run is asked to measure and how: the options of `netbench run`, checked when they are made."""

from __future__ import annotations

import re
from dataclasses import dataclass

from netbench import runlock
from netbench.errors import InvalidValue
from netbench.plan import LATENCY_TESTS, SCENARIOS, THROUGHPUT_TESTS, pass_order

MIN_SIZE = 16  # the agent's request header
TCP_MIN_MSS = 88  # Linux refuses a smaller TCP_MAXSEG (iperf3 -M)


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
    # changes, is measured in the first pass of each round and is the baseline of that round's modes.
    modes: tuple[str, ...] = ()
    # Passes over every mode (the cluster as it is without modes), the host baseline in each: see
    # plan.pass_order. Figures then vary from round to round as the machine does, and intervals say so.
    rounds: int = 1
    # Message sizes (bytes) of a sweep measured after each pass's tests: udp_rr's UDP payload, tcp's
    # MSS (iperf3 -M; from TCP_MIN_MSS on). Its records carry the size (the tidy table's `size` column).
    sizes: tuple[int, ...] = ()
    expiry: float = runlock.DEFAULT_EXPIRY  # s a node waits for the run's renewal before it cleans itself

    def __post_init__(self) -> None:
        checks = [("samples", self.samples >= 1), ("interval", self.interval > 0),
                  ("size", MIN_SIZE <= self.size <= 65000), ("duration", self.duration >= 1),
                  ("repeats", self.repeats >= 1), ("streams", self.streams >= 2),
                  ("expiry", 2 <= self.expiry <= 3600), ("rounds", 1 <= self.rounds <= 100)]
        for name, ok in checks:
            if not ok:
                raise InvalidValue(f"--{name}: {getattr(self, name)} is out of range")
        if not float(self.duration).is_integer():
            raise InvalidValue(f"--duration: {self.duration} is not whole seconds (iperf3 -t counts whole seconds)")
        if not re.fullmatch(r"\d+(\.\d+)?[KMGT]?(/\d+)?", self.udp_rate, re.I):
            raise InvalidValue(f"--udp-rate: {self.udp_rate!r} is not an iperf3 rate such as 500M or 1G")
        for size in self.sizes:
            if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= 65000:
                raise InvalidValue(f"--sizes: {size!r} is not a message size (whole bytes, {MIN_SIZE} to 65000)")
        if len(set(self.sizes)) != len(self.sizes):
            raise InvalidValue(f"--sizes: {','.join(map(str, self.sizes))} names a size twice")
        if self.sizes and not self.swept():
            raise InvalidValue(f"--sizes: sweeps udp_rr and tcp (tcp from {TCP_MIN_MSS} bytes); --tests "
                               f"{','.join(self.tests)} has neither at these sizes")
        unknown = [t for t in self.tests if t not in LATENCY_TESTS + THROUGHPUT_TESTS]
        if unknown:
            raise InvalidValue(f"--tests: unknown test {unknown[0]!r} (choose from "
                             f"{', '.join(LATENCY_TESTS + THROUGHPUT_TESTS)})")

    def passes(self) -> list[tuple[int, str | None, bool]]:
        """(round, mode, measures the host baseline) of every pass, in order (plan.pass_order)."""
        return pass_order(self.modes, self.rounds)

    def swept(self) -> dict[str, list[int]]:
        """The sizes each test of the sweep is measured at (run.json plan.sizes): udp_rr at all, tcp at
        those an MSS can be."""
        out = {}
        if "udp_rr" in self.tests and self.sizes:
            out["udp_rr"] = sorted(self.sizes)
        tcp = sorted(s for s in self.sizes if s >= TCP_MIN_MSS)
        if "tcp" in self.tests and tcp:
            out["tcp"] = tcp
        return out

    def steps_per(self, kind: str) -> int:
        if kind == "latency":
            return len([t for t in self.tests if t in LATENCY_TESTS]) + len(self.swept().get("udp_rr", ()))
        return (len([t for t in self.tests if t in THROUGHPUT_TESTS]) + len(self.swept().get("tcp", ()))) * self.repeats
