"""`netbench run --rounds` and `--sizes` against the lab, as a user runs them: the modes interleaved in
rounds with the host baseline in each, and a message-size sweep whose small MSS shows its per-packet cost."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from netbench.flannel import Mode
from netbench.results import RunDir

LATENCY = ["--tests", "udp_rr", "--samples", "30", "--interval", "0.002"]


def netbench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "netbench", *args], capture_output=True, text=True, timeout=timeout)


def test_a_multi_mode_run_in_rounds_measures_each_mode_and_the_baseline_in_every_round(in_mode, tmp_path):
    in_mode(Mode.host_gw)
    proc = netbench("run", "--modes", "host-gw,vxlan", "--rounds", "2", *LATENCY, "--scenarios",
                    "pod-pod,host-host", "--trace", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(json.loads(proc.stdout)["run_dir"])
    meta = json.loads((run_dir / "run.json").read_text())
    assert [(p["round"], p["mode"]) for p in meta["passes"]] == [(1, "host-gw"), (1, "vxlan"), (2, "vxlan"),
                                                                 (2, "host-gw")]
    for p in meta["passes"]:  # the nodes really ran each pass's mode, in each round
        assert {d["mode"] for d in p["detected"].values()} == {p["mode"]}, p
    assert meta["passes"][2]["switch_s"] < 0.05  # round 2 begins in the mode round 1 ended in: no switch
    df = pd.read_csv(run_dir / "table.csv")
    p50 = df[(df.metric == "rtt_p50_us")]
    pods = p50[p50.scenario == "pod-pod"].groupby(["mode", "round"]).size().to_dict()
    assert pods == {(m, r): 3 for m in ("host-gw", "vxlan") for r in (1, 2)}  # every pair, every round
    host = p50[p50.scenario == "host-host"].groupby("round").size().to_dict()
    assert host == {1: 3, 2: 3}  # the baseline in every round
    assert p50.value.between(5, 5000).all()
    samples = RunDir.open(run_dir).samples()
    assert {(s["mode"], s["round"]) for s in samples if s["scenario"] == "pod-pod"} == set(pods)
    assert meta["plan"]["rounds"] == 2 and len(meta["plan"]["passes"]) == 4 and meta["finished"] is True
    traces = json.loads((run_dir / "traces.json").read_text())  # each mode traced once: in the first round
    assert sorted((t["run_mode"], t["src"], t["dst"]) for t in traces) == [
        (m, a, b) for m in ("host-gw", "vxlan") for a, b in (("n1", "n2"), ("n1", "n3"), ("n2", "n3"))]
    assert all(any(v["kind"] == "delivered" and v["ok"] for v in t["verdicts"]) for t in traces)


def test_a_size_sweep_shows_the_overlays_per_packet_cost_and_refuses_a_size_the_path_cannot_carry(in_mode,
                                                                                                   tmp_path):
    # flannel's udp backend forwards every packet through a daemon (a TUN device segments what TCP sends):
    # its cost is per packet, so a small MSS carries far fewer bytes. On host-gw the kernel passes TCP's
    # GSO super-packets through the veths unsegmented, whatever the MSS: the sweep shows that too.
    in_mode(Mode.udp)
    rules = tmp_path / "gates.yaml"
    rules.write_text("gates:\n"
                     "  - {name: large requests answered, check: 'udp_rr.rtt_p50_us < 100000', size: 1400}\n"
                     "  - {name: a small MSS still carries, check: 'tcp.gbps > 0.01', size: 200}\n"
                     "  - {name: a size never swept, check: 'udp_rr.rtt_p50_us < 100000', size: 512}\n"
                     "  - {name: large requests reach, reachable: true, size: 1400}\n")
    proc = netbench("run", "--pairs", "n1:n2", "--scenarios", "pod-pod", "--tests", "udp_rr,tcp", "--samples", "30",
                    "--interval", "0.002", "--duration", "1", "--repeats", "1", "--sizes", "64,200,1400",
                    "--gates", str(rules), "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    run_dir = Path(out["run_dir"])
    sweep = RunDir.open(run_dir).frame(sweep=True)
    rtt = sweep[sweep.metric == "rtt_p50_us"].set_index("size").value
    assert sorted(rtt.index) == [64, 200, 1400] and rtt.between(5, 50000).all()
    gbps = sweep[sweep.metric == "gbps"].groupby("size").value.median()
    assert sorted(gbps.index) == [200, 1400]  # tcp from its smallest MSS: 64 is udp_rr's only
    assert gbps[200] < 0.6 * gbps[1400], gbps  # 7x the packets for the same bytes
    # every size's figures with their intervals, in --json and intervals.csv alike
    sized = {(r["test"], r["size"]): r for r in out["sizes"]}
    assert sorted(sized) == [("tcp", 200), ("tcp", 1400), ("udp_rr", 64), ("udp_rr", 200), ("udp_rr", 1400)]
    assert all("size" not in r for r in out["summary"])  # the run's own figures are the tests' own
    table = pd.read_csv(run_dir / "intervals.csv")
    for (test, size), r in sized.items():
        metric = "rtt_p50_us" if test == "udp_rr" else "gbps"
        (row,) = table[(table.test == test) & (table["size"] == size) & (table.metric == metric)].itertuples()
        assert row.value == pytest.approx(r[metric]) == pytest.approx((rtt if test == "udp_rr" else gbps)[size],
                                                                      rel=1e-3)
        if test == "udp_rr":  # 30 samples: an interval for p50 (bootstrapped), none for p99 (too few beyond it)
            assert row.ci_lo <= row.value <= row.ci_hi and r["ci"]["rtt_p50_us"] == [row.ci_lo, row.ci_hi]
            assert r["ci"]["rtt_p99_us"] is None and "fewer than 5 beyond p99" in r["ci_notes"]["rtt_p99_us"]
        else:  # one iperf3 run each way per size: no interval, and the note says why
            assert pd.isna(row.ci_lo) and row.note.startswith("n/a: 2 values") and r["ci"]["gbps"] is None
    assert table[table["size"].isna()].metric.str.startswith("rtt_").any()  # the tests' own rows stay
    verdicts = {v["name"]: v for v in json.loads((run_dir / "gates.json").read_text())}
    assert verdicts["large requests answered"]["passed"] is True and verdicts["large requests answered"]["size"] == 1400
    assert verdicts["a small MSS still carries"]["passed"] is True
    worst = sweep[(sweep.metric == "gbps") & (sweep["size"] == 200)].value.min()
    assert verdicts["a small MSS still carries"]["summary"] == f"udp pod-pod size 200: worst tcp.gbps = " \
        f"{worst:.3g} over 2 pairs"
    assert verdicts["a size never swept"]["passed"] is None  # never planned: nothing missing, nothing judged
    assert verdicts["large requests reach"]["summary"] == "udp pod-pod size 1400: 1 of 1 pairs reachable"
    # the console: the run's table, then the sweep's, one line per size (a cheap run: one pair, one size)
    proc = netbench("run", "--pairs", "n1:n2", "--scenarios", "pod-pod", *LATENCY, "--sizes", "64",
                    "--out", str(tmp_path / "console"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    tables = proc.stdout.split("size sweep: ")
    assert len(tables) == 2 and "udp_rr" in tables[0], proc.stdout
    (line,) = [ln for ln in tables[1].splitlines() if "│ udp_rr" in ln]
    assert re.search(r"│ pod-pod +│ udp_rr +│ +64 │ +1 │ +\d+ \[\d+–\d+\] │", line), line
    # udp's pods: MTU 1472, so at most 1444 bytes of UDP payload in one packet
    proc = netbench("run", "--pairs", "n1:n2", "--scenarios", "pod-pod", *LATENCY, "--sizes", "1450",
                    "--out", str(tmp_path / "big"))
    assert proc.returncode == 2 and "--sizes: 1450 bytes of udp_rr do not fit one packet on n1's pods (MTU 1472: " \
        "at most 1444 bytes)" in proc.stderr, proc.stderr[-2000:]
