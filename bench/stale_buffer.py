#!/usr/bin/env python
"""Do a run's stored policies still earn the returns they are stored with?

A UDRLPG (or GoGePo) buffer labels each policy with the return of its one training episode, under the
observation statistics of that moment. This re-runs the ``--n`` oldest and the ``--n`` newest stored policies
whose label is above ``--above``, plus the ``--top`` best-labelled ones, under the run's statistics now, and
prints label vs now. If the newest agree with their labels and the oldest do not, the labels went stale with
the statistics, not by luck.

Usage:
    PYTHONPATH=src python bench/stale_buffer.py RUN_DIR [--above 300] [--n 30] [--top 8] [--episodes 5]
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
    a = ap.parse_args()
    torch.set_num_threads(1)
    run = policygen.load(a.run)
    algo = run.algo
    order, labels, thetas = stored(algo)
    eng = RolloutEngine(run.run_config.env_id, algo.spec, num_envs=32, seed=a.seed, num_threads=1,
                        return_convention=algo.return_convention)
    eng.obs_stats = run.obs_stats
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


if __name__ == "__main__":
    main()
