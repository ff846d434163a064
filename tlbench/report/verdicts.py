"""Verdicts from seeds: is a reported number one of ours, and does a report's comparison hold?

    summarize(values) -> Summary (mean, n, std, 95% CI of the mean, 95% prediction interval)
    number_verdict(reported, summary, resolution) -> consistent | above | below | one run | pending
    compare(a values, b values, better) -> Comparison (diff, Welch p, verdict, seeds to resolve)

A reported number is one run of its authors, so the question is whether one
more run of ours could plausibly land there: the 95% *prediction* interval for
a single new draw, mean +- t(0.975, n-1) * s * sqrt(1 + 1/n), not the CI of
our mean (too narrow: it ignores the spread of the reported run) and not
"2 x the seed std" (too narrow with few seeds: s of 3 runs is itself noisy, so
the right multiplier at n=3 is 4.97, and the 2-std rule flags ~20% of faithful
reproductions; tests/report/test_verdicts.py measures both). Pure numpy + scipy.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # of every interval, and 1 - alpha of every test
ALPHA = 1 - LEVEL
POWER = 0.80  # the power "seeds to resolve" aims at
MAX_SEEDS = 1000  # beyond this, "seeds to resolve" is reported as None: not a practical number

NUMBER_VERDICTS = ("consistent", "above", "below", "one run", "pending")
# untested: a "no difference" claim, named but not tested (that needs an equivalence margin no report gives);
# not compared: the two rows' numbers cannot be set against each other (times of trials that ran differently).
CLAIM_VERDICTS = ("supported", "reversed", "unresolved", "pending", "untested", "not compared")
# Result fields that are times or speeds: what a run's way of running (the feature cache) changes.
TIME_METRICS = ("wall_s", "train_s", "epoch_s_mean", "images_per_s")


@dataclass(frozen=True)
class Summary:
    """Our seeds of one number: the finite values only (a diverged seed's NaN is not a value)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample std (ddof 1); 0.0 for one value, so tables keep showing it as before."""
        if not self.values:
            return None
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def ci(self) -> tuple[float, float] | tuple[None, None]:
        """95% t confidence interval of our mean."""
        return _bounds(self.values, predict=False) if self.n > 1 else (None, None)

    @property
    def pi(self) -> tuple[float, float] | tuple[None, None]:
        """95% prediction interval for one new run (a reported number is one run)."""
        return self.prediction_interval(runs=1)

    def prediction_interval(self, runs: int = 1) -> tuple[float, float] | tuple[None, None]:
        """95% prediction interval for the mean of `runs` new runs (a reported average of several)."""
        return _bounds(self.values, predict=True, runs=runs) if self.n > 1 else (None, None)


def interval_bounds(seeds: np.ndarray, predict: bool, runs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows of seeds (last axis) -> the 95% CI of the mean, or with `predict` the 95%
    prediction interval for the mean of `runs` new runs: mean +- t(0.975, n-1) * s * sqrt(1/runs + 1/n)
    (the new mean's variance s^2/runs plus our mean's s^2/n). Vectorised, so a calibration test can
    take 20,000 draws at once."""
    n = seeds.shape[-1]
    mean = seeds.mean(axis=-1)
    spread = (1 / runs if predict else 0.0) + 1 / n
    half = t_critical(n - 1) * seeds.std(axis=-1, ddof=1) * math.sqrt(spread)
    return mean - half, mean + half


@functools.cache
def t_critical(df: int) -> float:
    """The two-sided 95% t quantile; cached: a report of thousands of cells asks for a handful of dfs."""
    return float(stats.t.ppf(1 - ALPHA / 2, df))


def _bounds(values: tuple[float, ...], predict: bool, runs: int = 1) -> tuple[float, float]:
    low, high = interval_bounds(np.asarray(values), predict, runs)
    return float(low), float(high)


def summarize(values) -> Summary:
    array = np.asarray(list(values), dtype=float)
    return Summary(tuple(float(v) for v in array[np.isfinite(array)]))


def number_verdict(reported: float | None, summary: Summary, resolution: float = 0.0, runs: int = 1) -> str | None:
    """Where a reported number falls against our prediction interval; None where nothing was reported.

    `resolution` is half a unit of the reported number's last printed digit: 11.7 M
    parameters stands for anything in [11.65, 11.75], so a deterministic 11.69 is
    consistent with it. `runs`: the reported number is the mean of that many of its authors' runs."""
    if reported is None:
        return None
    if summary.n == 0:
        return "pending"
    if summary.n < 2:
        return "one run"
    return str(verdicts_of_runs(np.asarray([reported]), np.asarray([summary.values]), resolution, runs)[0])


def verdicts_of_runs(reported: np.ndarray, seeds: np.ndarray, resolution: float = 0.0, runs: int = 1) -> np.ndarray:
    """Vectorised core of number_verdict: reported[i] against the row seeds[i] (n >= 2 each)."""
    low, high = interval_bounds(seeds, predict=True, runs=runs)
    inside = (low - resolution <= reported) & (reported <= high + resolution)
    return np.where(inside, "consistent", np.where(seeds.mean(axis=-1) > reported, "above", "below"))


@dataclass(frozen=True)
class Comparison:
    diff: float | None  # mean of a minus mean of b
    p_value: float | None  # Welch's two-sided t-test
    n_a: int
    n_b: int
    verdict: str  # supported | reversed | unresolved at n seeds | pending
    seeds_to_resolve: int | None  # per row, for POWER at the observed effect and spread


def compare(a: Summary, b: Summary, better: str = "higher") -> Comparison:
    """Test the claim "a is better than b" (higher, or lower for losses and times) on our seeds."""
    if a.n == 0 or b.n == 0:
        return Comparison(None, None, a.n, b.n, "pending", None)
    diff = a.mean - b.mean
    seeds = seeds_to_resolve(abs(diff), a.std, b.std) if a.n > 1 and b.n > 1 else None
    unresolved = f"unresolved at {a.n if a.n == b.n else f'{a.n} and {b.n}'} seed{'s' if max(a.n, b.n) > 1 else ''}"
    if a.n < 2 or b.n < 2:  # no spread on one side: no test
        return Comparison(diff, None, a.n, b.n, unresolved, seeds)
    with warnings.catch_warnings():  # constant seeds (a parameter count) are expected, not a precision problem
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)
    if math.isnan(p) or p >= ALPHA:  # NaN: both sides constant and equal
        return Comparison(diff, None if math.isnan(p) else p, a.n, b.n, unresolved, seeds)
    a_wins = diff > 0 if better == "higher" else diff < 0
    return Comparison(diff, p, a.n, b.n, "supported" if a_wins else "reversed", None)


def timing_difference(row_a: str, cached_a: bool, row_b: str, cached_b: bool) -> str | None:
    """Why two rows' times do not compare, or None where they do.

    A time is judged only between trials that ran the same way. The reports computed every
    forward pass every epoch; a trial on the feature cache (features.py) runs its frozen base
    once, so its time is not the time of the run the report timed, nor of the other row's."""
    cached = [label for label, on in ((row_a, cached_a), (row_b, cached_b)) if on]
    if not cached:
        return None
    return (f"{' and '.join(repr(c) for c in cached)} ran on the feature cache (its frozen base once, not every epoch); "
            "times compare between runs with --no-feature-cache")  # fmt: skip


def not_compared(a: Summary, b: Summary, why: str) -> Comparison:
    """The claim's rows side by side, not judged: `not compared: <why>`."""
    diff = a.mean - b.mean if a.n and b.n else None
    return Comparison(diff, None, a.n, b.n, f"not compared: {why}", None)


def seeds_to_resolve(effect: float, std_a: float, std_b: float, power: float = POWER) -> int | None:
    """Seeds per row for a two-sided t-test at level ALPHA to detect `effect` with `power`.

    The exact power of the two-sample t-test with n seeds per side: under the
    alternative the statistic follows a noncentral t with df = 2n - 2 and
    noncentrality effect / (s * sqrt(2 / n)), s the pooled std. With equal n and
    the spreads we see, Welch's df is close to 2n - 2, so this is the standard
    calculation (as in G*Power or statsmodels' TTestIndPower), not a rule of
    thumb; the test in tests/report/test_verdicts.py simulates Welch at the answer.
    None where the effect is zero (no n resolves it) or needs more than MAX_SEEDS."""
    spread = math.sqrt((std_a**2 + std_b**2) / 2)
    if effect <= 0 or not math.isfinite(effect):
        return None
    if spread == 0:
        return 2  # no spread: two seeds a side show a constant difference
    n = np.arange(2, MAX_SEEDS + 1)
    df = 2 * n - 2
    ncp = effect / (spread * np.sqrt(2 / n))
    crit = stats.t.ppf(1 - ALPHA / 2, df)
    achieved = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
    enough = np.nonzero(achieved >= power)[0]
    return int(n[enough[0]]) if len(enough) else None


__all__ = ["ALPHA", "LEVEL", "POWER", "TIME_METRICS", "Comparison", "Summary", "compare", "not_compared", "number_verdict",
           "seeds_to_resolve", "summarize", "timing_difference"]  # fmt: skip
