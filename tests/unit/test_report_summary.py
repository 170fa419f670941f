"""The per-mode summary: modes in run order, each against a host baseline, plus the baseline row itself."""

import pandas as pd
import pytest

from netbench.report import summary
from netbench.results import COLUMNS


def rec(mode, scenario, test, metric, value, src="a", dst="b", repeat=0):
    return dict(run="r", mode=mode, scenario=scenario, src=src, dst=dst, test=test, metric=metric, value=value,
                unit="", repeat=repeat, time=0)


def frame(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def by_mode(rows):
    return {r["mode"]: r for r in rows}


# vxlan's pass measured host-host, udp's did not (a multi-mode run: the host path only in one pass)
TWO_MODES = [
    rec("vxlan", "pod-pod", "tcp", "gbps", 8.0), rec("vxlan", "pod-pod", "tcp", "gbps", 9.0, repeat=1),
    rec("vxlan", "pod-pod", "udp_rr", "rtt_p50_us", 90.0), rec("vxlan", "pod-pod", "udp_rr", "rtt_p99_us", 150.0),
    rec("vxlan", "host-host", "tcp", "gbps", 10.0), rec("vxlan", "host-host", "tcp", "gbps", 12.0, repeat=1),
    rec("vxlan", "host-host", "tcp_multi", "gbps", 15.0),
    rec("vxlan", "host-host", "udp", "gbps", 3.0),
    rec("vxlan", "host-host", "udp_rr", "rtt_p50_us", 70.0), rec("vxlan", "host-host", "udp_rr", "rtt_p99_us", 110.0),
    rec("vxlan", "host-host", "tcp", "cpu_snd_pct", 20.0), rec("vxlan", "host-host", "tcp", "cpu_rcv_pct", 35.0),
    rec("udp", "pod-pod", "tcp", "gbps", 0.75), rec("udp", "pod-pod", "udp_rr", "rtt_p50_us", 370.0),
]


def test_every_mode_gets_vs_host_when_only_one_pass_measured_host_host():
    rows = by_mode(summary.per_mode(frame(TWO_MODES)))
    assert rows["vxlan"]["tcp_vs_host"] == pytest.approx(8.5 / 11.0)
    assert rows["vxlan"]["host_baseline"] == "mode"
    assert rows["udp"]["tcp_vs_host"] == pytest.approx(0.75 / 11.0)  # the run-wide host-host median
    assert rows["udp"]["host_baseline"] == "run"
    assert rows["udp"]["host_rtt_p50_us"] == 70.0
    assert summary.borrowed_baseline(list(rows.values())) == ["udp"]


def test_a_mode_with_its_own_host_host_uses_it_not_the_run_wide_median():
    rows = TWO_MODES + [rec("udp", "host-host", "tcp", "gbps", 1.5)]
    udp = by_mode(summary.per_mode(frame(rows)))["udp"]
    assert udp["tcp_vs_host"] == pytest.approx(0.5) and udp["host_baseline"] == "mode"


def test_the_baseline_row_holds_the_host_host_medians_and_comes_last():
    rows = summary.per_mode(frame(TWO_MODES))
    assert [r["mode"] for r in rows] == ["vxlan", "udp", summary.BASELINE]  # the order the modes were run
    base = rows[-1]
    assert base["tcp_gbps"] == 11.0 and base["tcp_vs_host"] == 1.0
    assert base["tcp_multi_gbps"] == 15.0 and base["udp_gbps"] == 3.0
    assert base["rtt_p50_us"] == 70.0 and base["rtt_p99_us"] == 110.0
    assert base["cpu_per_gbps"] == pytest.approx(55.0 / 11.0)
    assert base["udp_loss_pct"] is None  # not measured: left empty, not invented


def test_no_host_host_means_no_baseline_row_and_no_ratio():
    rows = summary.per_mode(frame([r for r in TWO_MODES if r["scenario"] != "host-host"]))
    assert [r["mode"] for r in rows] == ["vxlan", "udp"]
    assert all(r["tcp_vs_host"] is None and r["host_baseline"] is None for r in rows)
    assert summary.borrowed_baseline(rows) == []


def test_modes_keep_the_order_they_were_run_in():
    rows = [rec(m, "pod-pod", "tcp", "gbps", 1.0) for m in ("vxlan", "host-gw", "udp", "frr", "vxlan")]
    assert [r["mode"] for r in summary.per_mode(frame(rows))] == ["vxlan", "host-gw", "udp", "frr"]


def test_an_empty_run_has_no_rows():
    assert summary.per_mode(frame([])) == []


def test_markdown_shows_the_baseline_row_and_says_whose_ratio_is_borrowed():
    md = summary.markdown(summary.per_mode(frame(TWO_MODES)), "netbench r")
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(table) == 1 + 3  # header, vxlan, udp, baseline
    assert table[-1].startswith(f"| {summary.BASELINE} | 11.00 | 1.00 |")
    assert '"vs host" of udp: the run-wide host-to-host median' in md
