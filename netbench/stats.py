"""Confidence intervals and significance: the one place netbench decides how sure a figure is and whether
two figures differ.

Three kinds of figure, three methods (each named in the output, 95% by default):
- RTT statistics (percentiles, mean, stddev) come from the raw samples: a percentile bootstrap, two-stage
  when the samples come in several units (a pair's pass, or a round): the units are resampled, then the
  samples within each, so a pair or a pass that differs from the others widens the interval instead of
  hiding in a pooled sample. A percentile with fewer than MIN_TAIL samples beyond it has no interval (the
  bootstrap of the few largest samples is a fiction).
- Per-test figures (Gbit/s, loss, CPU, retransmits; RTT figures without raw samples) are medians over the
  pairs × repeats measured: the distribution-free interval of a median (binomial order statistics, exact),
  which needs 6 values for 95%. A single iperf3 run gets no interval: its 1-s intervals are autocorrelated
  (one congestion window carries over to the next), so an interval from them would be falsely narrow.
- Ratios (vs host, CPU per Gbit/s): a percentile bootstrap of the ratio of medians. "vs host" of a run in
  rounds is taken round by round, against the host baseline of the same round (`round_ratio`): the rounds
  are resampled, then the values within each, so a drift of the machine between rounds cancels.

Differences (compare, gates, modes side by side): RTT statistics by the bootstrap interval of the ratio of
the two statistics (significant when it excludes 1); per-test figures by Mann-Whitney U over the values
(rank-based: a capped link or one bad repeat does not break it as it breaks a t-test's normal
approximation), or, when there are too few values for it to ever reach the level (3 against 3 cannot),
Welch's t on their logarithms (2 of each suffice; a throughput falling from 9.5 to 0.2 Gbit/s over 2 and 4
iperf3 runs is then called worse, not "not testable"). A difference is called better or worse only when
it is significant at `level` AND its size |b/a - 1| reaches `min_effect`; otherwise "no significant
difference".

Every bootstrap is seeded: the same run gives the same intervals.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def _sps():
    """scipy.stats, imported on first use: it costs 0.6 s, which a run would otherwise pay before it
    connects to a node (the bootstraps over samples need numpy only)."""
    from scipy import stats
    return stats


def prefetch() -> None:
    """Import scipy.stats and pandas in a thread now, while the caller waits on its nodes: the summary
    needs them only at the end, where importing them cost 1 s of a 10-node latency run's 15."""
    def load() -> None:
        _sps()
        import pandas  # noqa: F401
    threading.Thread(target=load, name="prefetch-stats", daemon=True).start()


LEVEL = 0.95  # confidence level of every interval and test
MIN_EFFECT = 0.05  # smallest relative difference called better/worse
RESAMPLES = 1000  # bootstrap replicates
MIN_TAIL = 5  # samples needed beyond a percentile (on its shorter side) for it to get an interval
SEED = 20261202
_CHUNK = 2_000_000  # resampled values held at once (memory: ~16 bytes each)

SAMPLES, VALUES, DERIVED = "samples", "values", "derived"  # what an estimate was computed from
METHODS = {
    SAMPLES: "percentile bootstrap over the raw RTT samples (units resampled, then samples within)",
    VALUES: "distribution-free interval of the median over pairs × repeats (binomial order statistics)",
    DERIVED: "percentile bootstrap of the ratio of medians over pairs × repeats (vs host: of the same round, "
             "rounds resampled)",
}
MANN_WHITNEY, WELCH = "Mann-Whitney U", "Welch's t on logs"
TESTS = {SAMPLES: "bootstrap interval of the ratio", VALUES: f"{MANN_WHITNEY} (too few values for it: {WELCH})",
         DERIVED: "bootstrap interval of the ratio"}
BETTER, WORSE, SAME, UNTESTABLE = "better", "worse", "no significant difference", "not testable"


@dataclass(frozen=True)
class Estimate:
    """A figure, its interval (lo, hi; None with a `note` saying why) and what a test needs to compare it."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int = 0  # samples (SAMPLES) or values (VALUES) it rests on
    kind: str = VALUES
    level: float = LEVEL
    note: str = ""
    reps: np.ndarray | None = field(default=None, repr=False, compare=False)  # bootstrap replicates
    values: np.ndarray | None = field(default=None, repr=False, compare=False)  # the values (VALUES)

    @property
    def method(self) -> str:
        return METHODS[self.kind]

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    def as_dict(self) -> dict:
        return {"value": self.value, "ci": [self.lo, self.hi] if self.has_interval else None, "n": self.n,
                "level": self.level, "method": self.method, **({"note": self.note} if self.note else {})}

    def text(self, fmt: str) -> str:
        """ "46 [43–49]", "46 [n/a]" or "–"."""
        if self.value is None:
            return "–"
        ci = f"{self.lo:{fmt}}–{self.hi:{fmt}}" if self.has_interval else "n/a"
        return f"{self.value:{fmt}} [{ci}]"


NONE = Estimate(None, note="not measured")


def _bounds(reps: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(reps, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(SEED if seed is None else seed)


def bootstrap(units: Sequence[Sequence[float]], stats: Sequence[float | str], resamples: int = RESAMPLES,
              seed: int | None = None) -> np.ndarray:
    """Replicates of each statistic (a percentile, "mean" or "std") of the pooled units, shape
    (len(stats), resamples). Two-stage: each replicate draws as many units as there are, with replacement,
    then, in the slots of the i-th unit, that many samples from the drawn unit. Percentiles are read from
    positions in the sorted pool, counted: no replicate is ever sorted; percentiles of one unit are drawn
    from their exact distribution (`_order_statistics`)."""
    arrays = [np.asarray(u, dtype=float) for u in units if len(u)]
    x = np.concatenate(arrays)
    n, k = len(x), len(arrays)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    sizes = np.array([len(a) for a in arrays], dtype=np.int32)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int32)
    slot_unit = np.repeat(np.arange(k), sizes)  # the unit whose slots each resampled value fills
    qs = [s for s in stats if not isinstance(s, str)]
    h = (n - 1) * np.asarray(qs, dtype=float) / 100  # np.percentile's linear interpolation
    lo_k = np.floor(h).astype(int)
    hi_k = np.minimum(lo_k + 1, n - 1)
    kth = np.unique(np.concatenate((lo_k, hi_k)))
    rng = _rng(seed)
    if k == 1 and len(qs) == len(stats):
        return _order_statistics(xs, lo_k, h - lo_k, resamples, rng)
    out = np.empty((len(stats), resamples))
    step = max(1, _CHUNK // n)
    for first in range(0, resamples, step):
        b = min(step, resamples - first)
        if k == 1:
            pos = rank[rng.integers(0, n, (b, n), dtype=np.int32)]
        else:
            drawn = rng.integers(0, k, (b, k), dtype=np.int32)[:, slot_unit]
            pos = rank[starts[drawn] + (rng.random((b, n), dtype=np.float32) * sizes[drawn]).astype(np.int32)]
        # how often each sorted position was drawn, per replicate; the j-th smallest resampled value is at
        # the first position whose running count exceeds j (searchsorted on rows laid end to end)
        rows = np.arange(b, dtype=np.int64)[:, None]
        counts = np.bincount((pos + (rows * n).astype(np.int32)).ravel(), minlength=b * n).reshape(b, n)
        cum = np.cumsum(counts, axis=1) + rows * (n + 1)
        cols = {}
        if qs:
            at = np.searchsorted(cum.ravel(), kth[None, :] + rows * (n + 1), side="right") - rows * n
            found = dict(zip(kth, xs[at].T, strict=True))
            for q, hq, lk, hk in zip(qs, h, lo_k, hi_k, strict=True):
                cols[q] = found[lk] + (hq - lk) * (found[hk] - found[lk])
        if any(isinstance(s, str) for s in stats):
            mean = counts @ xs / n
            cols.update({"mean": mean, "std": np.sqrt(np.maximum(counts @ (xs * xs) / n - mean ** 2, 0))})
        for i, s in enumerate(stats):
            out[i, first:first + b] = cols[s]
    return out


def _order_statistics(xs: np.ndarray, lo_k: np.ndarray, frac: np.ndarray, resamples: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The same bootstrap of percentiles of one unit, drawn without resampling: the resample's indices are
    floor(n·U) of n uniforms, so its (j+1)-th smallest is floor(n·U_(j+1)) with U_(j+1) ~ Beta(j+1, n-j), and
    the next one is U_(j+1) + (1 - U_(j+1))·Beta(1, n-j-1) (the smallest of the n-j-1 uniforms above it).
    Exact, and O(resamples) instead of O(resamples·n)."""
    n = len(xs)
    out = np.empty((len(lo_k), resamples))
    for i, (j, f) in enumerate(zip(lo_k, frac, strict=True)):
        u = rng.beta(j + 1, n - j, resamples)
        low = xs[np.minimum((u * n).astype(np.int64), n - 1)]
        if j + 1 < n and f > 0:
            u = u + (1 - u) * rng.beta(1, n - j - 1, resamples)
            low = low + f * (xs[np.minimum((u * n).astype(np.int64), n - 1)] - low)
        out[i] = low
    return out


def _point(x: np.ndarray, stat: float | str) -> float:
    return float(np.percentile(x, stat) if not isinstance(stat, str) else getattr(x, stat)())


def from_samples(units: Sequence[Sequence[float]], stats: Sequence[float | str], level: float = LEVEL,
                 resamples: int = RESAMPLES, seed: int | None = None) -> list[Estimate]:
    """Each statistic of the pooled RTT samples with its bootstrap interval (see `bootstrap`)."""
    units = [u for u in units if len(u)]
    if not units:
        return [NONE for _ in stats]
    x = np.concatenate([np.asarray(u, dtype=float) for u in units])
    reps = bootstrap(units, stats, resamples, seed)
    out = []
    for s, r in zip(stats, reps, strict=True):
        tail = len(x) * min(s, 100 - s) / 100 if not isinstance(s, str) else math.inf
        if tail < MIN_TAIL:
            out.append(Estimate(_point(x, s), n=len(x), kind=SAMPLES, level=level,
                                note=f"n/a: {len(x)} samples, fewer than {MIN_TAIL} beyond p{s:g}"))
        else:
            lo, hi = _bounds(r, level)
            out.append(Estimate(_point(x, s), lo, hi, len(x), SAMPLES, level, reps=r))
    return out


def min_values(level: float = LEVEL) -> int:
    """The fewest values whose range covers their median with at least `level` (1 - 2·0.5^n >= level)."""
    return max(2, math.ceil(math.log2(2 / (1 - level))))


def median_reps(table: np.ndarray, resamples: int = RESAMPLES, seed: int | None = None) -> np.ndarray:
    """Bootstrap replicates of the median of each column of `table` (rows: pairs × repeats), the rows
    resampled jointly so figures of one iperf3 run (CPU and Gbit/s) stay together: (columns, resamples)."""
    table = np.asarray(table, dtype=float).reshape(len(table), -1)
    idx = _rng(seed).integers(0, len(table), (resamples, len(table)))
    return np.median(table[idx], axis=1).T


def from_values(values: Sequence[float], level: float = LEVEL, seed: int | None = None) -> Estimate:
    """The median of per-test values (pairs × repeats) with its distribution-free interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return NONE
    value = float(np.median(v))
    reps = median_reps(v, seed=seed)[0] if len(v) > 1 else None
    need = min_values(level)
    if len(v) < need:
        return Estimate(value, n=len(v), level=level, reps=reps, values=v,
                        note=f"n/a: {len(v)} value{'s' * (len(v) > 1)} (pairs × repeats); a {level:.0%} interval "
                             f"of a median needs {need}")
    ci = _sps().quantile_test(v, p=0.5).confidence_interval(confidence_level=level)
    return Estimate(value, float(ci.low), float(ci.high), len(v), VALUES, level, reps=reps, values=v)


def derived(value: float | None, reps: np.ndarray | None, parts: Sequence[Estimate], level: float = LEVEL) -> Estimate:
    """A figure computed from others (a ratio) with the interval of its bootstrap replicates; none when a
    part has no interval of its own."""
    if value is None or not np.isfinite(value):
        return NONE
    if reps is None:
        return Estimate(value, n=1, kind=DERIVED, level=level, note="n/a: one value")
    missing = [p for p in parts if not p.has_interval]
    n = min(p.n for p in parts)
    if missing:
        return Estimate(value, n=n, kind=DERIVED, level=level, note=missing[0].note or "n/a")
    finite = reps[np.isfinite(reps)]
    lo, hi = _bounds(finite, level) if len(finite) else (None, None)
    return Estimate(value, lo, hi, n, DERIVED, level, reps=reps)


def ratio(num: Estimate, den: Estimate, level: float = LEVEL) -> Estimate:
    """num / den with a bootstrap interval (the two resampled independently)."""
    if num.value is None or not den.value or num.reps is None or den.reps is None:
        return NONE if num.value is None or not den.value else Estimate(num.value / den.value, kind=DERIVED,
                                                                        note="n/a: too few values")
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = num.reps / _rng(1).permutation(den.reps)
    return derived(num.value / den.value, reps, [num, den], level)


def round_ratio(num: Sequence[Sequence[float]], den: Sequence[Sequence[float]], level: float = LEVEL,
                resamples: int = RESAMPLES, seed: int | None = None) -> Estimate:
    """num over den round by round (num[i] and den[i]: the values of round i): the median over rounds of each
    round's median(num) / median(den). Interval: a two-stage percentile bootstrap, the rounds resampled, then
    num's and den's values within each; none when a side has fewer values than a median's interval needs."""
    rounds = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in zip(num, den, strict=True)]
    rounds = [(a[np.isfinite(a)], b[np.isfinite(b)]) for a, b in rounds]
    rounds = [(a, b) for a, b in rounds if len(a) and len(b) and np.median(b)]
    if not rounds:
        return NONE
    value = float(np.median([np.median(a) / np.median(b) for a, b in rounds]))
    n = min(sum(len(a) for a, _ in rounds), sum(len(b) for _, b in rounds))
    if n < min_values(level):
        return Estimate(value, n=n, kind=DERIVED, level=level, note=f"n/a: {n} values (pairs × repeats × rounds); "
                        f"a {level:.0%} interval of a median needs {min_values(level)}")
    rng = _rng(seed)
    per_round = np.empty((len(rounds), resamples))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, (a, b) in enumerate(rounds):
            ma = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
            per_round[i] = ma / np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    picked = rng.integers(0, len(rounds), (len(rounds), resamples))
    reps = np.median(np.take_along_axis(per_round, picked, axis=0), axis=0)
    finite = reps[np.isfinite(reps)]
    if not len(finite):
        return Estimate(value, n=n, kind=DERIVED, level=level, note="n/a: a baseline of 0")
    lo, hi = _bounds(finite, level)
    return Estimate(value, lo, hi, n, DERIVED, level, reps=reps)


@dataclass(frozen=True)
class Difference:
    """b against a: their ratio, its interval or p-value, and the verdict."""

    verdict: str
    ratio: float | None = None  # b / a
    lo: float | None = None
    hi: float | None = None
    p: float | None = None
    test: str = ""
    note: str = ""
    level: float = LEVEL
    min_effect: float = MIN_EFFECT
    significant: bool = False  # at `level`, whatever the size

    @property
    def real(self) -> bool:
        return self.verdict in (BETTER, WORSE)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "ratio": self.ratio, "ratio_ci": [self.lo, self.hi] if self.lo is not None
                else None, "p": self.p, "test": self.test, "level": self.level, "min_effect": self.min_effect,
                **({"note": self.note} if self.note else {})}

    def text(self) -> str:
        """ "+26% [+20%, +31%]" (b against a) or "+26% (p=0.002)"."""
        if self.ratio is None or not math.isfinite(self.ratio):
            return "–" if self.ratio is None else "from 0"
        out = f"{(self.ratio - 1) * 100:+.0f}%"
        if self.lo is not None and self.hi is not None:
            return out + f" [{(self.lo - 1) * 100:+.0f}%, {(self.hi - 1) * 100:+.0f}%]"
        return out + (f" (p={self.p:.2g})" if self.p is not None else "")


def _mw_floor(n1: int, n2: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney test of n1 against n2 values can give."""
    return 2 / math.comb(n1 + n2, n1)


def _values_test(a: np.ndarray, b: np.ndarray, level: float) -> tuple[str, float | None]:
    """The test of two sets of values and its p: Mann-Whitney U when they are enough for it to reach the level
    (4 against 4 at 95%), else Welch's t on their logarithms (throughput differs by ratios; raw values when
    one is 0), which needs 2 of each; p None when there are fewer."""
    if _mw_floor(len(a), len(b)) < 1 - level:
        return MANN_WHITNEY, float(_sps().mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if min(len(a), len(b)) < 2:
        return "", None
    x, y = (np.log(a), np.log(b)) if min(a.min(), b.min()) > 0 else (a, b)
    if not x.var() and not y.var():  # constant on both sides: different or not, with certainty
        return WELCH, 0.0 if x.mean() != y.mean() else 1.0
    return WELCH, float(_sps().ttest_ind(x, y, equal_var=False).pvalue)


def difference(a: Estimate, b: Estimate, higher_is_better: bool, level: float = LEVEL,
               min_effect: float = MIN_EFFECT) -> Difference:
    """Whether b differs from a (see the module's docstring for which test applies to which figure)."""
    common = {"level": level, "min_effect": min_effect}
    if a.value is None or b.value is None:
        return Difference(UNTESTABLE, note="not measured in both", **common)
    r = b.value / a.value if a.value else (math.inf if b.value else 1.0)
    lo = hi = p = None
    if a.kind == b.kind == VALUES and a.values is not None and b.values is not None:
        test, p = _values_test(a.values, b.values, level)
        if p is None:
            return Difference(UNTESTABLE, r, note=f"too few values ({len(a.values)} vs {len(b.values)}) for a test "
                              "(2 each)", **common)
        significant = p < 1 - level
        if a.reps is not None and b.reps is not None and a.value:
            with np.errstate(divide="ignore", invalid="ignore"):  # a replicate of 0 (no loss): not a bound
                reps = _rng(1).permutation(b.reps) / a.reps
            lo, hi = _bounds(reps[np.isfinite(reps)], level) if np.isfinite(reps).any() else (None, None)
    elif a.reps is not None and b.reps is not None and a.kind != VALUES and b.kind != VALUES:
        test = TESTS[a.kind]
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = _rng(1).permutation(b.reps) / a.reps  # independent runs: break the shared seed's pairing
        reps = reps[np.isfinite(reps)]
        if not len(reps):
            return Difference(UNTESTABLE, r, test=test, note="zero in every replicate", **common)
        lo, hi = _bounds(reps, level)
        significant = lo > 1 or hi < 1
        p = float(min(1.0, 2 * min(np.mean(reps <= 1), np.mean(reps >= 1))))
    else:
        if (a.kind == SAMPLES) != (b.kind == SAMPLES):
            why = "raw RTT samples in one of the two only"
        else:
            why = (a.note if a.reps is None else b.note) or "no interval to test"
        return Difference(UNTESTABLE, r, note=why, **common)
    effect = abs(r - 1)
    if not significant:
        return Difference(SAME, r, lo, hi, p, test, **common)
    if effect < min_effect:
        return Difference(SAME, r, lo, hi, p, test, note=f"significant, but smaller than the {min_effect:.0%} "
                          "minimum effect", significant=True, **common)
    better = (r > 1) == higher_is_better
    return Difference(BETTER if better else WORSE, r, lo, hi, p, test, significant=True, **common)


def described(level: float = LEVEL, min_effect: float | None = None) -> str:
    """One sentence for a table's foot: what the brackets and the verdicts mean (min_effect None: each
    metric's own, from the catalogue)."""
    effect = f"{min_effect:.0%}" if min_effect is not None else "the metric's minimum effect (RTT 10%, others 5%)"
    return (f"[lo–hi]: {level:.0%} confidence interval — RTT statistics: {METHODS[SAMPLES]}; per-test figures: "
            f"{METHODS[VALUES]}; ratios: {METHODS[DERIVED]}. A difference is real when it is significant at "
            f"{level:.0%} ({TESTS[SAMPLES]} for RTT, {TESTS[VALUES]} otherwise) and at least {effect}.")
