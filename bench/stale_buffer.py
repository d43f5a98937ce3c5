#!/usr/bin/env python
"""Do a run's stored policies still earn the returns they are stored with?

A UDRLPG (or GoGePo) buffer labels each policy with the return of its one training episode, under the
observation statistics of that moment. This re-runs the ``--n`` oldest and the ``--n`` newest stored policies
whose label is above ``--above``, plus the ``--top`` best-labelled ones, under the run's statistics now, and
prints label vs now. If the newest agree with their labels and the oldest do not, the labels went stale with
the statistics, not by luck.

``--by-label N`` instead re-runs every stored policy and reports, over N equal bins of the label range, the
label against the mean return now and the spread between a policy's own episodes; and, for the policies
labelled in the middle 80% of the range, the Spearman correlation and the mean absolute gap between label and
return now in % of the range: how well calibrated the data G is fitted to is.

Usage:
    PYTHONPATH=src python bench/stale_buffer.py RUN_DIR [--above 300] [--n 30] [--top 8] [--episodes 5]
    PYTHONPATH=src python bench/stale_buffer.py RUN_DIR --by-label 10 [--episodes 5]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import policygen
from policygen.rollout.engine import RolloutEngine


def stored(algo) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(arrival order, label, theta) of every stored policy, from the buffer's own state."""
    sd = algo.buffer.state_dict()
    if "order" in sd:  # UDRLPG bucket or FIFO buffer
        return np.asarray(sd["order"]), np.asarray(sd["returns"]), torch.as_tensor(sd["thetas"]).float()
    n = len(algo.buffer)  # GoGePo's recency ring: oldest first after unrolling at the head
    order = (np.arange(n) - algo.buffer.head) % n
    return order, algo.buffer.values["train_return"][:n].numpy(), algo.buffer.thetas[:n].float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--above", type=float, default=300.0, help="only policies labelled above this return")
    ap.add_argument("--n", type=int, default=30, help="oldest and newest policies re-run")
    ap.add_argument("--top", type=int, default=8, help="best-labelled policies re-run")
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--by-label", type=int, default=0, metavar="N",
                    help="re-run every stored policy and report label vs now over N label bins")
    a = ap.parse_args()
    torch.set_num_threads(1)
    run = policygen.load(a.run)
    algo = run.algo
    order, labels, thetas = stored(algo)
    eng = RolloutEngine(run.run_config.env_id, algo.spec, num_envs=32, seed=a.seed, num_threads=1,
                        return_convention=algo.return_convention)
    eng.obs_stats = run.obs_stats
    if a.by_label:
        return by_label(a, run, eng, labels, thetas)
    good = np.flatnonzero(labels > a.above)
    groups = {"oldest": good[np.argsort(order[good])[:a.n]], "newest": good[np.argsort(order[good])[::-1][:a.n]],
              "top": np.argsort(labels)[::-1][:a.top]}
    out = {"run": a.run, "env_steps": run.env_steps, "stored": len(labels), "above": a.above,
           "episodes": a.episodes}
    for name, idx in groups.items():
        idx = np.ascontiguousarray(idx)
        now = eng.evaluate(thetas[torch.as_tensor(idx)], episodes=a.episodes).train_returns
        out[name] = {"arrivals": [int(order[idx].min()), int(order[idx].max())],
                     "label_mean": float(labels[idx].mean()), "now_mean": float(now.mean()),
                     "labels": np.round(labels[idx], 1).tolist(), "now": np.round(now, 1).tolist()}
        print(f"{name:>6}: arrivals {order[idx].min()}-{order[idx].max()}, label mean {labels[idx].mean():.0f}, "
              f"now {now.mean():.0f}")
    print(json.dumps(out))


def by_label(a, run, eng, labels: np.ndarray, thetas: torch.Tensor) -> None:
    from policygen.analysis.stats import spearman

    # one call per episode: train returns (the run's convention) of every policy, episode by episode
    now = np.stack([eng.evaluate(thetas, episodes=1).train_returns for _ in range(a.episodes)], axis=1)
    lo, hi = float(labels.min()), float(labels.max())
    width, mean, spread = hi - lo, now.mean(axis=1), now.std(axis=1)
    mid = (labels > lo + 0.1 * width) & (labels < hi - 0.1 * width)
    out = {"run": a.run, "env_steps": run.env_steps, "stored": len(labels), "episodes": a.episodes,
           "label_range": [lo, hi], "bins": []}
    edges = np.linspace(lo, hi, a.by_label + 1)
    for i, (x, y) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        m = (labels >= x) & ((labels < y) if i < a.by_label - 1 else (labels <= y))
        if m.any():
            out["bins"].append({"label": [round(float(x), 1), round(float(y), 1)], "n": int(m.sum()),
                                "now_mean": round(float(mean[m].mean()), 1),
                                "own_episode_std": round(float(spread[m].mean()), 1)})
            print(f"label {x:8.1f} - {y:8.1f}: {int(m.sum()):5d} policies, now {mean[m].mean():8.1f}, "
                  f"std over own episodes {spread[m].mean():6.1f}")
    if mid.sum() > 2:
        out["middle"] = {"n": int(mid.sum()), "spearman": spearman(labels[mid], mean[mid]),
                         "mae_frac": float(np.abs(labels[mid] - mean[mid]).mean() / width)}
        print(f"middle 80% of the label range: {int(mid.sum())} policies, Spearman label vs now "
              f"{out['middle']['spearman']:.2f}, mean |label - now| {100 * out['middle']['mae_frac']:.1f}% of range")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
