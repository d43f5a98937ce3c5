"""Aggregate statistics the rliable way (Agarwal et al. 2021): IQM, stratified bootstrap CIs, P(X > Y).

Scores are ``(runs, tasks)`` arrays (one column per task; policygen's report uses one task per table, so
a column of seeds). The interquartile mean drops the lowest and highest 25% of all scores (as
``scipy.stats.trim_mean(x, 0.25)``, which rliable uses) and averages the rest. A stratified bootstrap
resamples runs with replacement within each task; the 95% interval is the 2.5 and 97.5 percentiles of the
statistic over the resamples. The probability of improvement P(X > Y) is, per task, the share of pairs
(x_i, y_j) with x_i > y_j, ties counting one half (the Mann-Whitney U divided by n m), averaged over tasks.
Calibration sweeps use ``spearman`` (``spearman_or_none`` in what they write).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import spearmanr, trim_mean

REPS = 2000


def _scores(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[0] < 1 or not np.isfinite(a).all():
        raise ValueError(f"scores must be a finite (runs, tasks) array with at least one run, got shape {a.shape}")
    return a


def iqm(x) -> float:
    """Interquartile mean of all scores ``(runs,)`` or ``(runs, tasks)``."""
    return float(trim_mean(_scores(x).ravel(), 0.25))


def _iqm_rows(values: np.ndarray) -> np.ndarray:
    """IQM of each row of ``values (reps, N)``, as ``trim_mean(row, 0.25)``: drop int(N/4) from each end."""
    n = values.shape[1]
    k = int(0.25 * n)
    return np.sort(values, axis=1)[:, k:n - k].mean(axis=1)


def stratified_resamples(n_runs: int, n_tasks: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Run indices ``(reps, n_runs, n_tasks)``: each task's runs drawn with replacement on their own."""
    return rng.integers(0, n_runs, size=(reps, n_runs, n_tasks))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def bootstrap_ci(x, stat: Callable | None = None, reps: int = REPS, seed: int = 0, level: float = 0.95) -> tuple:
    """(point estimate, low, high): the percentile interval of ``stat`` (default IQM) over stratified
    bootstrap resamples."""
    a = _scores(x)
    idx = stratified_resamples(a.shape[0], a.shape[1], reps, np.random.default_rng(seed))
    resampled = a[idx, np.arange(a.shape[1])]  # (reps, runs, tasks)
    if stat is None:
        return (iqm(a), *_percentiles(_iqm_rows(resampled.reshape(reps, -1)), level))
    return (float(stat(a)), *_percentiles(np.array([stat(r) for r in resampled]), level))


def _poi_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(X > Y) of each resample: ``a (reps, n, T)``, ``b (reps, m, T)`` -> ``(reps,)``."""
    x, y = a[:, :, None, :], b[:, None, :, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(1, 2)).mean(axis=1)


def probability_of_improvement(x, y) -> float:
    """P(X > Y): per task the share of run pairs where X's score beats Y's (ties 1/2), averaged over tasks."""
    a, b = _scores(x), _scores(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"X has {a.shape[1]} tasks, Y {b.shape[1]}")
    return float(_poi_batch(a[None], b[None])[0])


def poi_ci(x, y, reps: int = REPS, seed: int = 0, level: float = 0.95) -> tuple:
    """(P(X > Y), low, high), X's and Y's runs resampled independently within each task."""
    a, b = _scores(x), _scores(y)
    rng = np.random.default_rng(seed)
    ra = a[stratified_resamples(a.shape[0], a.shape[1], reps, rng), np.arange(a.shape[1])]
    rb = b[stratified_resamples(b.shape[0], b.shape[1], reps, rng), np.arange(b.shape[1])]
    return (probability_of_improvement(a, b), *_percentiles(_poi_batch(ra, rb), level))


def mean_band(curves: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs of ``curves (runs, points)`` and its 95% bootstrap band (runs resampled), per point."""
    c = np.asarray(curves, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, c.shape[0], size=(reps, c.shape[0]))
    means = c[idx].mean(axis=1)  # (reps, points)
    return c.mean(axis=0), np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def spearman(x, y) -> float:
    """Spearman rank correlation of two sequences (NaN when undefined: fewer than 3 points or a constant one),
    rounded to 12 decimals: it is a ratio of small integers (9/10 for 21 commands with rank differences
    summing to 154), which scipy's float arithmetic returns as 0.8999999999999999, below a 0.9 target."""
    if len(x) < 3:
        return float("nan")
    with warnings.catch_warnings():  # constant input: scipy warns and returns NaN
        warnings.simplefilter("ignore")
        rho = float(spearmanr(x, y).statistic)
    return round(rho, 12) if np.isfinite(rho) else float("nan")


def spearman_or_none(x, y) -> float | None:
    """``spearman`` for JSON files and tables: None where it is undefined (JSON has no NaN)."""
    rho = spearman(x, y)
    return rho if np.isfinite(rho) else None
