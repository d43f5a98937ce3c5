#!/usr/bin/env python
"""Why a GoGePo run is stuck: does V rank the buffer, and can G reach what V rates higher?

Given a GoGePo run directory (its latest checkpoint), this prints JSON with:

* V's ranking of the buffered policies: Spearman(V(theta), achieved training return) over the newest 64 / 256 /
  all of them, and V at the 10 best buffered policies;
* V(G(c)) for commands across and above the seen range, and the real return of G(command) (the rollout command);
* what G can reach at the rollout command: a copy of G trained on (V(G(c)) - target(c))^2 at that single command
  (Adam, the run's generator learning rate, 50 steps), then V and the real return of its output.

If V ranks well and the single-command copy of G reaches a higher real return, G is not stuck for want of a
good evaluator or of capacity: it is not trained at the command it is rolled out with. Runs on one thread.

Usage: python bench/gogepo_generator_probe.py RUN_DIR [--steps 50] [--episodes 3]
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch

from policygen.algorithms.loading import load_run
from policygen.analysis.stats import spearman
from policygen.errors import PolicygenError
from policygen.rollout.engine import RolloutEngine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--steps", type=int, default=50, help="Adam steps of the single-command copy of G")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per real-return measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        loaded = load_run(args.run)
    except PolicygenError as e:
        raise SystemExit(f"gogepo_generator_probe: {e}") from None
    a = loaded.algo
    if loaded.run.config["algorithm"] != "gogepo":
        raise SystemExit(f"{args.run}: a {loaded.run.config['algorithm']} run; this probe takes gogepo runs")
    engine = RolloutEngine(loaded.run_config.env_id, a.spec, num_envs=16, seed=12345,
                           return_convention=a.return_convention, num_threads=1)
    engine.obs_stats = loaded.obs_stats

    def real(theta: torch.Tensor) -> float:  # the run's training return convention, stats frozen
        return float(engine.evaluate(theta, episodes=args.episodes, count_steps=False).train_returns[0])

    b = a.buffer
    g = b.gather(b.newest_indices(None))
    theta, ret = g["theta"].float(), g["train_return"].numpy()
    v = a.predict_returns(theta)
    ranking = {str(n): spearman(ret[:n], v[:n]) for n in (64, 256, len(b))}
    top = np.argsort(-ret)[:10]
    command = a.next_command()
    lo, hi = a.seen_return_range()
    commands = sorted({*np.linspace(lo, hi, 6).round(1).tolist(), round(command, 1), round(hi + (hi - lo) / 2, 1)})
    with torch.no_grad():
        out = a.generate(torch.tensor(commands, dtype=torch.float64))
    v_of_g = dict(zip(map(str, commands), a.predict_returns(out).round(1).tolist(), strict=True))

    c = torch.tensor([command], dtype=torch.float64)
    with torch.no_grad():
        before = a.generate(c)
    trained = copy.deepcopy(a.generator)
    opt = torch.optim.Adam(trained.parameters(), lr=a.cfg.generator_lr)
    a.evaluator.requires_grad_(False)
    for _ in range(args.steps):
        loss = (a.evaluator(trained(a.command_input(c))) - a.value_target(c)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    a.generator = trained
    with torch.no_grad():
        after = a.generate(c)
    print(json.dumps({
        "run": args.run, "env_steps": loaded.env_steps, "buffer": len(b), "seen_return_range": [lo, hi],
        "rollout_command": command,
        "spearman_V_vs_return_newest": ranking,
        "best_buffered_returns": ret[top].round(1).tolist(), "V_at_them": v[top].round(1).tolist(),
        "V_of_G_at_commands": v_of_g,
        "G_at_command": {"V": float(a.predict_returns(before)[0]), "real_return": real(before)},
        f"G_trained_{args.steps}_steps_at_command_only": {"V": float(a.predict_returns(after)[0]),
                                                          "real_return": real(after),
                                                          "param_change_norm": float((after - before).norm())},
    }, indent=2))


if __name__ == "__main__":
    main()
