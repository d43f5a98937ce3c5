#!/usr/bin/env python
"""Is there a family of InvertedPendulum-v5 policies whose return moves smoothly with one parameter?

A calibrated generator needs, for every command in [0, 1000], a policy that earns it reliably. A balancing
policy found by return maximisation (ARS here) feeds back the cart position, so a constant push only moves
its resting point: it earns 1000 or, past a cliff, falls at once. Without the position term the same policy
holds the pole while the cart drifts at a speed the push sets, until the cart meets the end of its rail and
the pole falls: the return is then a smooth, nearly noise-free function of the push. This prints both
families (10 episodes per push, the standard return) and writes them as JSON.

Usage:
    policygen train ars --env InvertedPendulum-v5 --steps 20000 --seed 0 --env-threads 1 --out RUN
    PYTHONPATH=src python bench/pendulum_family.py RUN [--episodes 10] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

from policygen.algorithms.loading import load_run

WITH_POSITION = [0.0, 0.5, 1.0, 1.5, 1.75, 2.0]
WITHOUT_POSITION = [-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.12, 0.14, 0.15, 0.16, 0.17, 0.18, 0.2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="an ARS run directory on InvertedPendulum-v5 (a linear policy)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--out", help="JSON file for the table")
    a = p.parse_args()
    loaded = load_run(a.run)
    theta, _ = loaded.algo.eval_policy()
    spec = loaded.algo.spec
    if spec.hidden or spec.bias or loaded.run_config.env_id != "InvertedPendulum-v5":
        raise SystemExit("needs an ARS run on InvertedPendulum-v5 with a linear policy without bias (its preset)")
    gains = theta.numpy().reshape(spec.act_dim, spec.obs_dim)[0].astype(np.float64)
    mean, std, high = loaded.obs_stats.mean, loaded.obs_stats.std, spec.action_high[0]
    env = gym.make("InvertedPendulum-v5")

    def returns(k: np.ndarray, push: float) -> list[float]:
        out = []
        for e in range(a.episodes):
            obs, _ = env.reset(seed=e)
            total = 0.0
            for _ in range(1000):
                action = np.clip([k @ ((obs - mean) / std) + push], -high, high)
                obs, r, term, trunc, _ = env.step(action)
                total += float(r)
                if term or trunc:
                    break
            out.append(total)
        return out

    no_position = gains.copy()
    no_position[0] = 0.0  # observation 0 is the cart position
    table = {"run": a.run, "gains": gains.tolist(), "episodes": a.episodes, "families": {}}
    for name, k, pushes in (("ars policy + push", gains, WITH_POSITION),
                            ("ars policy without cart-position gain + push", no_position, WITHOUT_POSITION)):
        print(name)
        rows = []
        for push in pushes:
            r = returns(k, push)
            rows.append({"push": push, "return_mean": float(np.mean(r)), "return_std": float(np.std(r))})
            print(f"  push {push:6.2f}: return {np.mean(r):7.1f} +- {np.std(r):6.1f}")
        table["families"][name] = rows
    if a.out:
        with open(a.out, "w") as f:
            json.dump(table, f, indent=2)


if __name__ == "__main__":
    main()
