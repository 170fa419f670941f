"""The metric catalogue: every metric netbench records, declared once.

A metric is named here with the tests that record it, its unit, which way is better, how it is shown
and in which views it is a headline figure. The latency statistics are computed from what is declared
here (`Metric.stat`), the tidy table takes its units from here, gates accept exactly the metrics declared
here, and compare, the report and the CLI tables pick their headline figures from here: adding a metric
is one entry in this file (and, for a column of the per-mode table, one entry in MODE_COLUMNS).

A leaf module: plain data, no I/O, nothing imported from netbench.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HIGHER, LOWER = "higher", "lower"  # which way is better; "" for a fact that is not a score (reachable)

LATENCY = ("udp_rr", "icmp")  # tests timed from RTT samples
THROUGHPUT = ("tcp", "tcp_multi", "udp")  # iperf3 tests
TESTS = LATENCY + THROUGHPUT

# The views a metric can be a headline of, each mapped (in Metric.headline) to the tests it heads there.
SUMMARY = "summary"  # `netbench run`'s per scenario and test medians (its --json)
TABLE = "table"  # the columns of `netbench run`'s table (a subset of SUMMARY)
COMPARE = "compare"  # `netbench compare`
HEATMAP = "heatmap"  # the report's per-pair heatmaps (labelled as in MODE_COLUMNS)
VIEWS = (SUMMARY, TABLE, COMPARE, HEATMAP)


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    tests: tuple[str, ...]
    better: str
    label: str  # a column heading where the test is named beside it ("p99 µs")
    fmt: str  # format spec of a value (".0f")
    headline: dict[str, tuple[str, ...]] = field(default_factory=dict)  # view -> the tests it heads there
    # latency: how it is computed from the RTT samples, a numpy reduction ("min", "mean", "std", "max")
    # or a percentile (99.0); None: the tool reports it (iperf3) or it is counted (loss, reachable)
    stat: str | float | None = None
    gate: bool = True  # may a gate rule name it (reachable has a rule kind of its own)
    # the smallest relative difference compare and regression gates call better/worse (significant or not,
    # smaller is "no significant difference"): the agreement netbench's method has with an independent tool
    # (sockperf within 10% for RTT, iperf3 within 5% for throughput), below which a difference is the method's
    min_effect: float = 0.05

    @property
    def from_samples(self) -> bool:
        """Is its interval bootstrapped from the raw RTT samples (a percentile, the mean, the stddev)? Min and
        max are not: a bootstrap cannot go beyond the largest sample; they are judged over pairs instead."""
        return isinstance(self.stat, float) or self.stat in ("mean", "std")

    @property
    def higher_is_better(self) -> bool:
        return self.better == HIGHER


def _all(*views: str, tests: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {v: tests for v in views}


_HEAD = (SUMMARY, TABLE, COMPARE)
_RTT = 0.10  # min_effect of RTT figures
# The order is the order of the columns of `netbench run`'s table, of the metrics of a summary row and of
# the metrics a gate error lists; latency records write loss_pct first, then the sample statistics.
CATALOGUE: tuple[Metric, ...] = (
    Metric("rtt_min_us", "us", LATENCY, LOWER, "min µs", ".0f", stat="min", min_effect=_RTT),
    Metric("rtt_mean_us", "us", LATENCY, LOWER, "mean µs", ".0f", stat="mean", min_effect=_RTT),
    Metric("rtt_stddev_us", "us", LATENCY, LOWER, "stddev µs", ".0f", stat="std", min_effect=_RTT),
    Metric("rtt_p50_us", "us", LATENCY, LOWER, "p50 µs", ".0f", stat=50.0, min_effect=_RTT,
           headline={**_all(*_HEAD, tests=LATENCY), HEATMAP: ("udp_rr",)}),
    Metric("rtt_p90_us", "us", LATENCY, LOWER, "p90 µs", ".0f", stat=90.0, min_effect=_RTT),
    Metric("rtt_p99_us", "us", LATENCY, LOWER, "p99 µs", ".0f", stat=99.0, min_effect=_RTT,
           headline=_all(*_HEAD, tests=("udp_rr",))),
    Metric("rtt_p999_us", "us", LATENCY, LOWER, "p99.9 µs", ".0f", stat=99.9, min_effect=_RTT,
           headline=_all(*_HEAD, tests=LATENCY)),
    Metric("rtt_max_us", "us", LATENCY, LOWER, "max µs", ".0f", stat="max", min_effect=_RTT),
    Metric("gbps", "Gbit/s", THROUGHPUT, HIGHER, "Gbit/s", ".3f",
           headline={**_all(*_HEAD, tests=THROUGHPUT), HEATMAP: ("tcp",)}),
    Metric("loss_pct", "%", (*LATENCY, "udp"), LOWER, "loss %", ".1f",
           headline={**_all(SUMMARY, TABLE, tests=(*LATENCY, "udp")), COMPARE: ("udp",)}),
    Metric("jitter_ms", "ms", ("udp",), LOWER, "jitter ms", ".3f", headline={SUMMARY: ("udp",)}),
    Metric("retransmits", "count", ("tcp", "tcp_multi"), LOWER, "retrans", ".0f",
           headline=_all(*_HEAD, tests=("tcp",))),
    Metric("cpu_snd_pct", "%", THROUGHPUT, LOWER, "CPU snd %", ".1f"),
    Metric("cpu_rcv_pct", "%", THROUGHPUT, LOWER, "CPU rcv %", ".1f"),
    Metric("reachable", "bool", LATENCY, "", "reachable", ".0f", gate=False),
)
METRICS: dict[str, Metric] = {m.name: m for m in CATALOGUE}


@dataclass(frozen=True)
class Column:
    """A column of the per-mode table (the report's summary, `run --modes`): the pod-pod (or host-host)
    median of test.metric, or, without them, a figure report.summary derives (named by key)."""

    key: str
    label: str
    fmt: str
    test: str | None = None
    metric: str | None = None


MODE_COLUMNS: tuple[Column, ...] = (
    Column("mode", "mode", ""),
    Column("tcp_gbps", "TCP Gbit/s", ".2f", "tcp", "gbps"),
    Column("tcp_vs_host", "vs host", ".2f"),
    Column("tcp_multi_gbps", "TCP ×P Gbit/s", ".2f", "tcp_multi", "gbps"),
    Column("udp_gbps", "UDP Gbit/s", ".2f", "udp", "gbps"),
    Column("udp_loss_pct", "UDP loss %", ".2f", "udp", "loss_pct"),
    Column("rtt_p50_us", "RTT p50 µs", ".0f", "udp_rr", "rtt_p50_us"),
    Column("rtt_p99_us", "RTT p99 µs", ".0f", "udp_rr", "rtt_p99_us"),
    Column("rtt_p999_us", "RTT p99.9 µs", ".0f", "udp_rr", "rtt_p999_us"),
    Column("cpu_per_gbps", "CPU %/Gbit/s", ".1f"),
    Column("loss_pct", "RTT loss %", ".1f", "udp_rr", "loss_pct"),
)


def of_test(test: str) -> list[Metric]:
    """The metrics a test records, in catalogue order."""
    return [m for m in CATALOGUE if test in m.tests]


def gateable(test: str) -> list[str]:
    """The metric names a gate rule may name for a test ([] for an unknown test)."""
    return [m.name for m in of_test(test) if m.gate]


def unit(name: str) -> str:
    return METRICS[name].unit


def higher_is_better(name: str) -> bool:
    return METRICS[name].higher_is_better


def headline(view: str, test: str) -> list[Metric]:
    """The headline metrics of one test in one view, in catalogue order."""
    return [m for m in CATALOGUE if test in m.headline.get(view, ())]


def headline_pairs(view: str) -> list[tuple[str, str]]:
    """Every (test, metric) that is a headline of the view, tests in TESTS order."""
    return [(t, m.name) for t in TESTS for m in headline(view, t)]


def columns(view: str) -> list[Metric]:
    """The metrics that head a view for any test (e.g. the columns of `netbench run`'s table)."""
    return [m for m in CATALOGUE if m.headline.get(view)]


def sample_stats() -> list[Metric]:
    """The latency statistics computed from RTT samples, in the order they are recorded."""
    return [m for m in CATALOGUE if m.stat is not None]


def title(test: str, metric: str) -> str:
    """A label that needs no column of tests beside it: the per-mode table's, else "test metric label"."""
    for c in MODE_COLUMNS:
        if (c.test, c.metric) == (test, metric):
            return c.label
    return f"{test} {METRICS[metric].label}"
