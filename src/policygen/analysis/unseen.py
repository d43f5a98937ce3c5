"""Unseen returns, measured: a command sweep split by what the final buffer holds at each command.

Each command gets one label (``UDRLPG.command_groups``): ``seen bucket`` (its bucket holds a policy),
``never-filled bucket`` (an empty bucket between the lowest and highest stored return), ``above range`` /
``below range`` (outside the stored returns) or ``held-out band`` (a run trained with ``holdout_band``).
Per group: n, mean |achieved - commanded| in return units and as a share of the stored range, the mean
signed error, and Spearman within the group when it has 3 commands or more.

Only return-bucketed generators have an answer to "is this command's bucket filled": UDRLPG (with the
bucket buffer, or with the FIFO ablation read on the same grid of ``n_buckets`` equal bins). GoGePo keeps
a recency buffer whose returns were never bucketed; the report refuses it rather than invent a grid.
"""

from __future__ import annotations

import numpy as np

from policygen.algorithms.loading import LoadedRun
from policygen.analysis.stats import spearman_or_none
from policygen.analysis.sweep import sweep
from policygen.errors import PolicygenError

ABOVE = 0.2
"""Default commands reach ``ABOVE`` x the stored range past the highest stored return (1.2 x best when
the lowest return is 0, as on InvertedPendulum)."""


def _groups_fn(loaded: LoadedRun):
    fn = getattr(loaded.algo, "command_groups", None)
    if fn is None:
        raise PolicygenError(f"--unseen-report needs a return-bucketed buffer (udrlpg runs); "
                             f"{loaded.run.config['algorithm']} has none")
    return fn


def default_commands(loaded: LoadedRun, n: int = 25) -> np.ndarray:
    """``n`` commands from the lowest stored return to ``ABOVE`` x the stored range above the highest."""
    _groups_fn(loaded)
    lo, hi = loaded.algo.stored_return_range()
    return np.linspace(lo, hi + ABOVE * (hi - lo), n)


def group_summary(commands, achieved, groups: list[str], span: float) -> dict:
    """Per group: n, mean |achieved - commanded| (raw and / ``span``), mean signed error, Spearman."""
    c, a, g = np.asarray(commands, float), np.asarray(achieved, float), np.asarray(groups)
    out = {}
    for name in dict.fromkeys(groups):  # first-seen order
        m = g == name
        err = a[m] - c[m]
        out[name] = {"n": int(m.sum()), "mae": float(np.abs(err).mean()),
                     "mae_frac": float(np.abs(err).mean() / span) if span > 0 else None,
                     "mean_error": float(err.mean()), "spearman": spearman_or_none(c[m], a[m])}
    return out


def unseen_report(loaded: LoadedRun, commands: np.ndarray, episodes: int = 5, seed: int = 0,
                  backend: str | None = None) -> dict:
    """``sweep`` plus the group of every command and the per-group figures, under the key ``unseen``. Always G
    itself (no command map): the report is about what G makes of returns it has or has not seen."""
    groups = _groups_fn(loaded)(commands)
    algo = loaded.algo
    lo, hi = algo.stored_return_range()
    result = sweep(loaded, commands, episodes, seed, backend, raw=True)
    buf = algo.buffer
    result["unseen"] = {
        "buffer": algo.config.buffer, "stored_range": [lo, hi],
        "bucket_width": (buf.r_max - buf.r_min) / buf.n_bins,
        "filled_buckets": len(np.unique(buf.bucket_of(buf.stored_returns()))), "stored_policies": len(buf),
        "holdout_band": list(algo.holdout_range()) if algo.holdout_range() else None,
        "held_out_policies": algo.held_out,
        "groups": groups,
        "summary": group_summary(commands, result["achieved_mean"], groups, hi - lo),
    }
    return result


def unseen_table(result: dict) -> str:
    """Commands with their group, then one line per group."""
    u = result["unseen"]
    lines = [f"{'command':>10} {'achieved':>10} {'± std':>8}  group", "-" * 52]
    for c, m, s, g in zip(result["commands"], result["achieved_mean"], result["achieved_std"], u["groups"],
                          strict=True):
        lines.append(f"{c:10.1f} {m:10.1f} {s:8.1f}  {g}")
    lo, hi = u["stored_range"]
    lines.append(f"stored returns [{lo:.1f}, {hi:.1f}]; {u['filled_buckets']} filled buckets of width "
                 f"{u['bucket_width']:.2f}" + (f"; held-out band [{u['holdout_band'][0]:.1f}, "
                                               f"{u['holdout_band'][1]:.1f}], {u['held_out_policies']} policies "
                                               f"kept out" if u["holdout_band"] else ""))
    lines.append(f"{'group':<20} {'n':>3} {'MAE':>8} {'% range':>8} {'mean err':>9} {'Spearman':>9}")
    for name, s in u["summary"].items():
        rho = "-" if s["spearman"] is None else f"{s['spearman']:.3f}"
        frac = "-" if s["mae_frac"] is None else f"{100 * s['mae_frac']:.1f}"
        lines.append(f"{name:<20} {s['n']:>3} {s['mae']:8.1f} {frac:>8} {s['mean_error']:9.1f} {rho:>9}")
    return "\n".join(lines)
