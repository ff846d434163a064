"""Calibration of the verdicts: simulated seeds from one normal distribution, no training."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tlbench.report.verdicts import compare, number_verdict, seeds_to_resolve, summarize, verdicts_of_runs

DRAWS = 20_000


def faithful_draws(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """DRAWS faithful reproductions: n seeds of ours and one reported run, all from one distribution."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(loc=85.0, scale=1.3, size=(DRAWS, n + 1))
    return samples[:, :n], samples[:, n]


def two_std_rule(ours: np.ndarray, reported: np.ndarray) -> np.ndarray:
    """The report's old flag: |mean - reported| > 2 x the seed std."""
    return np.abs(ours.mean(axis=1) - reported) > 2 * ours.std(axis=1, ddof=1)


@pytest.mark.parametrize("n", [3, 5])
def test_prediction_interval_flags_five_percent_of_faithful_reproductions(n):
    ours, reported = faithful_draws(n, seed=n)
    flagged = np.mean(verdicts_of_runs(reported, ours) != "consistent")
    assert abs(flagged - 0.05) <= 0.015, flagged
    # The scalar verdict the report uses agrees with the vectorised one.
    for i in range(200):
        assert number_verdict(float(reported[i]), summarize(ours[i])) == verdicts_of_runs(reported[i : i + 1], ours[i : i + 1])[0]


@pytest.mark.parametrize("n", [3, 5])
def test_the_old_two_std_rule_fails_the_same_calibration(n):
    ours, reported = faithful_draws(n, seed=n)
    flagged = np.mean(two_std_rule(ours, reported))
    assert abs(flagged - 0.05) > 0.015, flagged  # ~19% at n=3, ~12% at n=5


@pytest.mark.parametrize("n", [3, 5])
def test_a_reported_mean_of_two_runs_is_judged_as_one(n):
    """002's averages over two depths: the reported number is the mean of two runs, so one run's
    interval is too wide (it misses real deviations); the interval for a mean of two is calibrated."""
    rng = np.random.default_rng(100 + n)
    samples = rng.normal(loc=85.0, scale=1.3, size=(DRAWS, n + 2))
    ours, reported = samples[:, :n], samples[:, n:].mean(axis=1)
    flagged = np.mean(verdicts_of_runs(reported, ours, runs=2) != "consistent")
    assert abs(flagged - 0.05) <= 0.015, flagged
    as_one_run = np.mean(verdicts_of_runs(reported, ours) != "consistent")
    assert as_one_run < 0.035, as_one_run  # too few flags: the one-run interval fails this calibration
    assert number_verdict(float(reported[0]), summarize(ours[0]), runs=2) == verdicts_of_runs(reported[:1], ours[:1], runs=2)[0]


def test_above_and_below_by_the_sign_of_ours_minus_reported():
    ours = summarize([80.0, 81.0, 82.0])
    assert number_verdict(95.0, ours) == "below"
    assert number_verdict(60.0, ours) == "above"
    assert number_verdict(81.5, ours) == "consistent"
    assert number_verdict(None, ours) is None  # nothing reported: no verdict


def test_edge_cases_one_run_pending_and_nan():
    assert number_verdict(80.0, summarize([79.0])) == "one run"
    assert number_verdict(80.0, summarize([])) == "pending"
    # A diverged seed's NaN is not a value: two finite seeds remain, and their interval is finite.
    with_nan = summarize([0.80, float("nan"), 0.90])
    assert with_nan.n == 2 and np.isfinite(with_nan.std) and all(np.isfinite(with_nan.pi))
    assert number_verdict(0.85, with_nan) == "consistent"
    assert number_verdict(80.0, summarize([79.0, float("nan")])) == "one run"
    assert summarize([79.0]).ci == (None, None) and summarize([79.0]).pi == (None, None)


def test_intervals_match_the_textbook_formulas():
    values = [80.0, 90.0, 85.0]
    s = summarize(values)
    t = stats.t.ppf(0.975, 2)
    assert s.ci[1] - s.mean == pytest.approx(t * 5.0 / np.sqrt(3))
    assert s.pi[1] - s.mean == pytest.approx(t * 5.0 * np.sqrt(1 + 1 / 3))  # 4.97 s at n = 3
    assert (s.pi[1] - s.mean) / s.std == pytest.approx(4.97, abs=0.01)


def test_a_rounded_reported_number_matches_a_constant_of_ours():
    params = summarize([11.689512] * 3)  # parameters in millions: the same every seed
    assert number_verdict(11.7, params, resolution=0.05) == "consistent"
    assert number_verdict(11.7, params) == "below"


def test_a_clear_difference_is_supported_and_its_mirror_reversed():
    rng = np.random.default_rng(0)
    good, bad = summarize(rng.normal(90, 0.5, 5)), summarize(rng.normal(85, 0.5, 5))
    assert compare(good, bad).verdict == "supported"
    assert compare(bad, good).verdict == "reversed"
    assert compare(bad, good, better="lower").verdict == "supported"  # a loss or a time
    result = compare(good, bad)
    assert result.p_value < 0.001 and result.diff == pytest.approx(good.mean - bad.mean)


def test_noise_is_unresolved_and_its_seed_count_resolves_it_at_the_stated_power():
    rng = np.random.default_rng(1)
    effect, spread = 0.5, 1.0  # half a standard deviation: three seeds cannot see it
    a, b = summarize(rng.normal(effect, spread, 3)), summarize(rng.normal(0, spread, 3))
    result = compare(a, b)
    if result.verdict != "unresolved at 3 seeds":  # the draw is fixed; guard against a lucky one
        pytest.fail(f"expected unresolved, got {result}")
    assert result.seeds_to_resolve == seeds_to_resolve(abs(result.diff), a.std, b.std)
    # Calibration of the count: at the true effect and spread, that many seeds resolve the
    # claim (Welch p < 0.05) in 80% of simulated experiments, and one seed fewer do not reach it.
    needed = seeds_to_resolve(effect, spread, spread)
    assert 40 < needed < 100  # the textbook answer for d = 0.5 is 64

    def resolved_rate(n: int) -> float:
        a = rng.normal(effect, spread, size=(8000, n))
        b = rng.normal(0, spread, size=(8000, n))
        return float(np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05))

    assert 0.78 <= resolved_rate(needed) <= 0.84
    assert resolved_rate(max(2, needed - 8)) < 0.80


def test_one_seed_a_side_is_unresolved_without_a_test_and_empty_is_pending():
    assert compare(summarize([90.0]), summarize([80.0])).verdict == "unresolved at 1 seed"
    assert compare(summarize([90.0]), summarize([80.0])).p_value is None
    assert compare(summarize([]), summarize([80.0, 81.0])).verdict == "pending"
    assert compare(summarize([1.0, 2.0, 3.0]), summarize([1.0, 2.0])).verdict == "unresolved at 3 and 2 seeds"
    assert seeds_to_resolve(0.0, 1.0, 1.0) is None  # no effect: no number of seeds resolves it
