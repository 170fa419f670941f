"""Intervals and significance on synthetic data, seeded: a 95% interval covers the true value in at least 90%
of 200 draws; two draws of one distribution are called different in at most 5% of 200 cases; a 20% shift of
RTT p50 is found in at least 95% of 200 cases with the default sample count (`netbench run --samples`)."""

import numpy as np
import pytest
from scipy import stats as sps

from netbench import gates, metrics, stats
from netbench.report import html, plots
from tests.unit.test_gates import frame, rec, rules_file

DRAWS = 200
SAMPLES = 200  # `netbench run`'s default latency samples per pair and test
# RTT as a lab measures it: a floor (the path) plus a skewed queueing/wake-up tail
FLOOR, SHAPE, SCALE = 40.0, 2.0, 10.0
TRUE_P50 = FLOOR + sps.gamma(SHAPE, scale=SCALE).ppf(0.5)
TRUE_P99 = FLOOR + sps.gamma(SHAPE, scale=SCALE).ppf(0.99)


def rtts(rng, n, scale=1.0):
    return (FLOOR + rng.gamma(SHAPE, SCALE, n)) * scale


@pytest.fixture(scope="module")
def p50s():
    """p50 estimates of 2 × 200 draws of one distribution and of 200 draws shifted by 20%."""
    rng = np.random.default_rng(7)
    same = [stats.from_samples([rtts(rng, SAMPLES)], [50.0])[0] for _ in range(2 * DRAWS)]
    shifted = [stats.from_samples([rtts(rng, SAMPLES, 1.2)], [50.0])[0] for _ in range(DRAWS)]
    return same, shifted


def test_the_bootstrap_is_the_percentile_of_resampled_samples():
    x = rtts(np.random.default_rng(1), 500)
    reps = stats.bootstrap([x[:250], x[250:]], [50.0, 99.0, "mean", "std"], resamples=4, seed=3)
    rng = np.random.default_rng(3)  # the draws bootstrap makes: 2 units with replacement, then 250 from each
    drawn = rng.integers(0, 2, (4, 2), dtype=np.int32)[:, np.repeat([0, 1], 250)]
    idx = drawn * 250 + (rng.random((4, 500), dtype=np.float32) * 250).astype(np.int32)
    order = np.argsort(x, kind="stable")
    rank = np.empty(len(x), dtype=np.int32)
    rank[order] = np.arange(len(x))
    drawn = np.sort(x)[rank[idx]]  # the same draws, as values
    np.testing.assert_allclose(reps, [*np.percentile(drawn, [50, 99], axis=1), drawn.mean(1), drawn.std(1)])


def test_percentiles_of_one_unit_are_drawn_from_the_same_distribution_as_by_resampling():
    x = rtts(np.random.default_rng(4), SAMPLES)
    exact = stats.bootstrap([x], [50.0, 90.0], resamples=20000)  # order statistics drawn directly
    resampled = stats.bootstrap([x], [50.0, 90.0, "mean"], resamples=20000)[:2]  # a moment: resampling
    for a, b in zip(exact, resampled, strict=True):
        np.testing.assert_allclose(np.percentile(a, [2.5, 50, 97.5]), np.percentile(b, [2.5, 50, 97.5]), rtol=0.01)


def test_a_95_interval_of_rtt_p50_covers_the_true_value(p50s):
    same, _ = p50s
    covered = np.mean([e.lo <= TRUE_P50 <= e.hi for e in same[:DRAWS]])
    assert covered >= 0.90, covered
    assert {e.method for e in same} == {stats.METHODS[stats.SAMPLES]} and same[0].level == 0.95


def test_intervals_of_p50_over_pairs_of_p99_and_of_per_test_medians_cover_the_true_value():
    rng = np.random.default_rng(11)
    pairs = [stats.from_samples(np.split(rtts(rng, 3 * 100), 3), [50.0])[0] for _ in range(DRAWS)]  # 3 pairs
    assert np.mean([e.lo <= TRUE_P50 <= e.hi for e in pairs]) >= 0.90
    p99 = [stats.from_samples([rtts(rng, 1000)], [99.0])[0] for _ in range(DRAWS)]
    assert np.mean([e.lo <= TRUE_P99 <= e.hi for e in p99]) >= 0.90
    # throughput: 6 values (3 nodes, both ways, one repeat), a median of 9.4 Gbit/s
    gbps = [stats.from_values(rng.normal(9.4, 0.3, 6)) for _ in range(DRAWS)]
    assert np.mean([e.lo <= 9.4 <= e.hi for e in gbps]) >= 0.90


def test_two_draws_of_one_distribution_show_no_significant_difference(p50s):
    same, _ = p50s
    rtt = metrics.METRICS["rtt_p50_us"]
    verdicts = [stats.difference(a, b, False, min_effect=rtt.min_effect).verdict
                for a, b in zip(same[:DRAWS], same[DRAWS:], strict=True)]
    assert np.mean([v == stats.SAME for v in verdicts]) >= 0.95
    rng = np.random.default_rng(5)  # throughput: Mann-Whitney over 6 values each
    tcp = [stats.difference(stats.from_values(rng.normal(9.4, 0.3, 6)), stats.from_values(rng.normal(9.4, 0.3, 6)),
                            True).verdict for _ in range(DRAWS)]
    assert np.mean([v == stats.SAME for v in tcp]) >= 0.95


def test_a_20_percent_shift_of_rtt_p50_is_detected(p50s):
    same, shifted = p50s
    rtt = metrics.METRICS["rtt_p50_us"]
    found = [stats.difference(a, b, False, min_effect=rtt.min_effect) for a, b in zip(same, shifted, strict=False)]
    assert np.mean([d.verdict == stats.WORSE for d in found]) >= 0.95
    assert np.median([d.ratio for d in found]) == pytest.approx(1.2, abs=0.03)


def test_a_significant_difference_below_the_minimum_effect_is_no_difference():
    a, b = (stats.from_values(np.full(12, v) + np.linspace(0, 0.01, 12)) for v in (10.0, 10.2))
    d = stats.difference(a, b, True, min_effect=0.05)
    assert d.significant and d.verdict == stats.SAME and "minimum effect" in d.note
    assert stats.difference(a, b, True, min_effect=0.01).verdict == stats.BETTER


def test_too_few_values_give_no_interval_and_no_test_and_say_so():
    e = stats.from_values([9.0, 9.5, 9.2])
    assert not e.has_interval and "needs 6" in e.note and e.text(".1f") == "9.2 [n/a]"
    d = stats.difference(e, stats.from_values([4.0]), True)
    assert d.verdict == stats.UNTESTABLE and "too few values (3 vs 1)" in d.note
    tail = stats.from_samples([np.arange(300.0)], [99.9])[0]
    assert not tail.has_interval and "fewer than 5 beyond p99.9" in tail.note


def test_a_regression_gate_fails_only_on_a_significant_regression(tmp_path):
    (rule,) = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: t\n    regression: tcp.gbps\n"
                                                     "    tolerance_pct: 10\n"))

    def run(values):
        return frame([{**rec("vxlan", "pod-pod", f"n{i}", "n0", "tcp", "gbps", v)} for i, v in enumerate(values)])
    base = run([10, 6, 14, 9, 11, 7, 12, 8])
    noisy = run([9, 5, 13, 8, 10, 6, 11, 7])  # medians 9.5 -> 8.5: 10.5% worse, well inside the spread
    (o,) = gates.evaluate([rule], noisy, [], baseline=base)
    assert o.passed is True and "Mann-Whitney U: not significant at 95%" in o.summary
    slower = run([6.0, 6.1, 6.2, 6.3, 6.4, 6.5, 6.6, 6.7])
    steady = run([9.0, 9.1, 9.2, 9.3, 9.4, 9.5, 9.6, 9.7])
    (o,) = gates.evaluate([rule], slower, [], baseline=steady)
    assert o.passed is False and "Mann-Whitney U: significant at 95%" in o.summary


def test_a_regression_of_rtt_p50_is_tested_on_the_raw_samples(tmp_path):
    (rule,) = gates.parse_rules(rules_file(tmp_path, "gates:\n  - name: l\n    regression: udp_rr.rtt_p50_us\n"))
    rng = np.random.default_rng(2)
    df = frame([rec("vxlan", "pod-pod", "a", "b", "udp_rr", "rtt_p50_us", 57.0)])

    def samples(scale):
        return [{"mode": "vxlan", "scenario": "pod-pod", "src": "a", "dst": "b", "test": "udp_rr",
                 "rtt_us": list(rtts(rng, SAMPLES, scale))}]
    (o,) = gates.evaluate([rule], df, [], baseline=df, samples=samples(1.3), baseline_samples=samples(1.0))
    assert o.passed is False and "bootstrap interval of the ratio: significant" in o.summary
    (o,) = gates.evaluate([rule], df, [], baseline=df, samples=samples(1.0), baseline_samples=samples(1.0))
    assert o.passed is True


def test_heatmaps_of_a_metric_share_one_colour_range_that_never_stretches_a_tiny_difference():
    a, b = np.array([[np.nan, 0.95780], [0.95781, np.nan]]), np.array([[np.nan, 0.5], [0.6, np.nan]])
    assert plots.colour_range([a, b]) == (0.5, 0.95781)  # one scale for both modes
    lo, hi = plots.colour_range([a])
    assert hi - lo == pytest.approx(0.095781) and lo < 0.9578 < 0.95781 < hi  # not 0.00001 over the whole scale


def test_trace_verdict_labels_name_each_kind_once():
    labels = html.verdict_labels([{"kind": "delivered", "ok": True}, {"kind": "rate-limited", "ok": True},
                                  {"kind": "rate-limited", "ok": False}])
    assert labels == [{"kind": "delivered", "ok": True}, {"kind": "rate-limited", "ok": False}]


def test_compare_calls_a_20_percent_slower_p50_worse_and_a_second_draw_no_different(tmp_path):
    from netbench.measure import latency
    from netbench.report import compare
    from netbench.results import RunDir
    rng = np.random.default_rng(9)

    def stored(name, scale):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.write_meta({"mode": "vxlan"})
        for src, dst in (("n1", "n2"), ("n1", "n3"), ("n2", "n3")):
            x = list(rtts(rng, SAMPLES, scale))
            run.append(latency.records("udp_rr", x, SAMPLES, "pod-pod", src, dst), "vxlan")
            run.append_samples("vxlan", "pod-pod", src, dst, "udp_rr", x)
        return run.path
    names, df = compare.compare([stored("before", 1.0), stored("again", 1.0), stored("slower", 1.2)])
    p50 = df[df.metric == "rtt_p50_us"].iloc[0]
    assert p50["again verdict"] == stats.SAME and p50["slower verdict"] == stats.WORSE
    assert p50["slower test"] == stats.TESTS[stats.SAMPLES] and p50["slower ratio ci"][0] > 1


def test_runs_of_one_mode_each_are_compared_path_against_path(tmp_path):
    """The seed's question on a real cluster: vxlan as it runs, then `routes apply static`, then a run."""
    from netbench.measure import latency
    from netbench.report import compare
    from netbench.results import RunDir
    rng = np.random.default_rng(3)

    def stored(name, mode, scale):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.write_meta({"mode": mode})
        for src, dst in (("n1", "n2"), ("n1", "n3"), ("n2", "n3")):
            x = list(rtts(rng, SAMPLES, scale))
            run.append(latency.records("udp_rr", x, SAMPLES, "pod-pod", src, dst), mode)
            run.append_samples(mode, "pod-pod", src, dst, "udp_rr", x)
        return run.path
    vxlan, static = stored("vxlan", "vxlan", 1.0), stored("static", "static", 0.7)
    names, df = compare.compare([vxlan, static])
    p50 = df[df.metric == "rtt_p50_us"].iloc[0]
    assert p50["mode"] == "vxlan → static" and p50["static verdict"] == stats.BETTER
    assert 0.6 < p50["static ratio"] < 0.8
    _, same = compare.compare([vxlan, stored("vxlan-again", "vxlan", 1.0)])
    assert set(same["mode"]) == {"vxlan"}  # one path against itself: by mode, as before


def test_rounds_are_the_units_when_a_run_has_several():
    from netbench.report.summary import _units
    line = {"mode": "vxlan", "scenario": "pod-pod", "test": "udp_rr"}
    passes = [{**line, "rtt_us": [1.0, 2.0]}, {**line, "rtt_us": [3.0]}]
    assert _units(passes) == [[1.0, 2.0], [3.0]]  # one pass per pair: the pairs
    rounds = [{**line, "round": r, "rtt_us": [float(r)] * 2} for r in (0, 0, 1)]
    assert _units(rounds) == [[0.0] * 4, [1.0] * 2]  # the pairs of one round together
    assert _units(rounds[:2]) == [[0.0] * 2, [0.0] * 2]  # a single round: its pairs


@pytest.mark.parametrize("args, message", [(["--level", "1.5"], "--level: 1.5"),
                                           (["--min-effect", "-5"], "--min-effect: -5")])
def test_compare_refuses_a_level_or_minimum_effect_that_is_not_one(tmp_path, args, message):
    from typer.testing import CliRunner

    from netbench.cli import app
    from netbench.errors import UserError
    result = CliRunner().invoke(app, ["compare", str(tmp_path), str(tmp_path), *args])
    assert isinstance(result.exception, UserError) and message in str(result.exception)


def test_a_collapse_over_a_few_iperf3_runs_is_called_worse_not_untestable():
    # `run --pairs n1:n2 --repeats 1` against the same with 2 repeats while throttled: 2 against 4 values,
    # too few for Mann-Whitney ever to reach 5%
    before, after = stats.from_values([9.5, 9.56]), stats.from_values([0.19, 0.192, 0.2, 0.191])
    d = stats.difference(before, after, True)
    assert d.verdict == stats.WORSE and d.test == stats.WELCH
    assert stats.difference(before, stats.from_values([9.4, 9.6, 9.52, 9.5]), True).verdict == stats.SAME
    assert stats.difference(before, stats.from_values([0.2]), True).verdict == stats.UNTESTABLE  # 1 value
