"""IQM, stratified bootstrap CIs and the probability of improvement against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from policygen.analysis.stats import bootstrap_ci, iqm, mean_band, poi_ci, probability_of_improvement, spearman


def test_iqm_by_hand():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # drops 1, 2 and 7, 8: mean(3, 4, 5, 6)
    assert iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # drops one each side: mean(2, 3, 4)
    assert iqm([[1, 10], [2, 20], [3, 30], [4, 40]]) == pytest.approx((3 + 4 + 10 + 20) / 4)  # all 8 scores pooled
    with pytest.raises(ValueError):
        iqm([1.0, float("nan")])


def test_bootstrap_ci_matches_the_exact_resampling_distribution():
    """Runs [0, 0, 0, 10]: a resample holds k tens, k ~ Binomial(4, 1/4). Its IQM (mean of the middle two) is
    0 for k <= 1 (P = 0.738), 5 for k = 2 (P = 0.211), 10 for k >= 3 (P = 0.051): so the 2.5th percentile is 0
    and the 97.5th is 10, since P(IQM <= 5) = 0.949 < 0.975. The point estimate is IQM = 0."""
    assert bootstrap_ci([0, 0, 0, 10], reps=4000, seed=1) == (0.0, 0.0, 10.0)
    # the mean: k tens give 2.5 k; P(k <= 2) = 0.949, P(k <= 3) = 0.996, so the interval is [0, 7.5]
    assert bootstrap_ci([0, 0, 0, 10], stat=lambda a: float(np.mean(a)), reps=4000, seed=1) == (2.5, 0.0, 7.5)


def test_bootstrap_is_stratified_by_task():
    """Task 0 scores all 1, task 1 all 5: resampling within each task keeps every resample's mean at 3
    (pooled resampling would not)."""
    scores = np.array([[1, 5], [1, 5], [1, 5]])
    assert bootstrap_ci(scores, stat=lambda a: float(np.mean(a)), reps=500) == (3.0, 3.0, 3.0)
    assert bootstrap_ci([7, 7, 7]) == (7.0, 7.0, 7.0)


def test_probability_of_improvement_by_hand():
    # pairs of [1, 2, 3] against [2, 2]: (1,2) 0 twice, (2,2) 1/2 twice, (3,2) 1 twice: 3/6
    assert probability_of_improvement([1, 2, 3], [2, 2]) == pytest.approx(0.5)
    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert probability_of_improvement([1, 2, 4], [3]) == pytest.approx(1 / 3)
    x, y = [5.0, 1.0, 3.0, 3.0], [2.0, 3.0, 4.0]
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)
    # two tasks: 1 on the first, 0 on the second -> 1/2
    assert probability_of_improvement([[2, 0], [3, 0]], [[1, 1]]) == pytest.approx(0.5)
    p, lo, hi = poi_ci([1, 1, 1], [1, 1])
    assert (p, lo, hi) == (0.5, 0.5, 0.5)
    p, lo, hi = poi_ci([1, 2, 3, 4], [2, 3, 4, 5], reps=500)
    assert lo <= p <= hi and 0 <= lo < hi <= 1


def test_mean_band():
    curves = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 2.0]])
    mean, lo, hi = mean_band(curves, reps=400)
    assert mean.tolist() == [0.0, 2.0, 2.0]
    assert lo[0] == hi[0] == 0.0 and lo[2] == hi[2] == 2.0  # no spread, no band
    assert lo[1] == 1.0 and hi[1] == 3.0  # two runs: a resample is both 1s, both 3s, or one each


def test_vectorised_iqm_bootstrap_equals_the_generic_one():
    scores = np.random.default_rng(3).normal(size=(7, 2))
    assert bootstrap_ci(scores, reps=300, seed=5) == pytest.approx(bootstrap_ci(scores, stat=iqm, reps=300, seed=5))


def test_spearman_is_exact_where_a_target_sits_and_nan_when_undefined():
    achieved = list(range(21))
    for i, j in ((0, 8), (9, 12), (13, 15)):  # rank differences squared sum to 2 (64 + 9 + 4) = 154: rho = 9/10
        achieved[i], achieved[j] = achieved[j], achieved[i]
    assert spearman(range(21), achieved) == 0.9  # scipy's float arithmetic gives 0.8999999999999999
    assert spearman(range(21), range(21)) == 1.0 and spearman(range(5), range(5, 0, -1)) == -1.0
    assert np.isnan(spearman([1, 2, 3], [4, 4, 4])) and np.isnan(spearman([1, 2], [1, 2]))


def test_an_undefined_calibration_is_none_in_the_sweep_json_and_undefined_in_its_table():
    """A generator that ignores the command (the same return at every command) has no rank correlation: the
    sweep writes None (strict JSON has no NaN) and its table and plot title say 'undefined'."""
    import json

    from policygen.analysis.stats import spearman_or_none
    from policygen.analysis.sweep import table

    assert spearman_or_none([1, 2, 3], [4, 4, 4]) is None and spearman_or_none([1, 2], [1, 2]) is None
    assert spearman_or_none([1, 2, 3], [1, 3, 2]) == 0.5
    flat = {"commands": [0.0, 50.0, 100.0], "achieved_mean": [1000.0] * 3, "achieved_std": [0.0] * 3,
            "outside_seen_range": [], "spearman": spearman_or_none([0, 50, 100], [1000] * 3), "mae_frac": 6.5}
    json.dumps(flat, allow_nan=False)
    assert table(flat).splitlines()[-1] == "Spearman undefined; mean absolute error 650.0% of the range"


def test_a_sweeps_error_splits_into_the_evaluators_and_the_generators():
    """|achieved - c| <= |achieved - V| + |V - c|: the sweep says which of the two a GoGePo generator's miss is."""
    from policygen.analysis.sweep import error_split, table

    # commands span 100; at 50 V says 50 but the policy earns 30 (V misjudges by 20); at 100 V rightly says 90,
    # so G missed V's target by 10: evaluator error 20 / 3, generator error 10 / 3 (per cent of the span)
    result = {"commands": [0.0, 50.0, 100.0], "achieved_mean": [0.0, 30.0, 90.0], "achieved_std": [0.0] * 3,
              "evaluator_prediction": [0.0, 50.0, 90.0], "outside_seen_range": [], "spearman": 1.0,
              "mae_frac": 0.1}
    split = error_split(result)
    assert split["evaluator_error_frac"] == pytest.approx(20 / 300)
    assert split["generator_error_frac"] == pytest.approx(10 / 300)
    assert table(result).splitlines()[-1] == ("of which V misjudges G's policies by 6.7% (|achieved - V(G(c))|) and "
                                              "G misses V's target by 3.3% (|V(G(c)) - c|)")
    # through a command map G is given x, not c: its error is against x (here V(G(x)) = x everywhere)
    mapped = {**result, "generator_inputs": [0.0, 50.0, 90.0]}
    assert error_split(mapped)["generator_error_frac"] == 0.0
    assert table(mapped).splitlines()[-1].endswith("G misses V's target by 0.0% (|V(G(x)) - x|)")
    del result["evaluator_prediction"]
    assert error_split(result) == {} and "misjudges" not in table(result)
