#!/usr/bin/env python
"""How the observation statistics and the stored policies' first layers move while UDRLPG trains.

Trains UDRLPG (``fast`` plus any ``--set``) and, every ``--every`` env steps, prints the running observation
std per input, and the root mean square of the first-layer weights per input column over the stored policies
and for G(c*). With ``rebase_buffer`` every stored policy's column is rescaled by std_new / std_old after each
rollout, so inputs whose std grows from the warm-up's few falling episodes get ever larger weights; without it
the columns stay near the noise scale. The run directory is an ordinary one (resumable, evaluations in
metrics.csv), only the printing is added.

Usage:
    PYTHONPATH=src python bench/first_layer_drift.py --env Hopper-v5 --seed 0 --steps 100000 --out RUN \
        [--every 25000] [--set rebase_buffer=true ...]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from policygen.algorithms import udrlpg
from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import start_run


def column_rms(first_layers: torch.Tensor) -> np.ndarray:
    """(B, out, in) -> (in,): RMS of each input column's weights over rows and policies."""
    return first_layers.pow(2).mean(dim=(0, 1)).sqrt().numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--every", type=int, default=25000)
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args()
    overrides = dict(kv.split("=", 1) for kv in a.set)
    iterate, due = udrlpg.UDRLPG.iterate, [0]

    def report(self, engine):
        m = iterate(self, engine)
        if engine.env_steps >= due[0] and self.buffer is not None:
            due[0] += a.every
            out_dim, in_dim = self.spec.layer_shapes[0]
            stored = torch.stack([e[2] for bucket in self.buffer._entry_lists() for e in bucket])
            with torch.no_grad():
                g = self.gen(torch.tensor([[self.buffer.best_scaled]], dtype=torch.float32))
            fmt = lambda v: " ".join(f"{x:5.2f}" for x in v)  # noqa: E731
            print(f"{engine.env_steps:>8} best {self.buffer.best_return:8.1f} stored {len(stored):5d}\n"
                  f"  obs std      {fmt(np.asarray(engine.obs_stats.std))}\n"
                  f"  stored W1    {fmt(column_rms(stored[:, :out_dim * in_dim].reshape(-1, out_dim, in_dim)))}\n"
                  f"  G(c*) W1     {fmt(column_rms(g[:, :out_dim * in_dim].reshape(-1, out_dim, in_dim)))}",
                  flush=True)
        return m

    udrlpg.UDRLPG.iterate = report
    rc = RunConfig(env_id=a.env, steps=a.steps, seed=a.seed, eval_every=50000, eval_episodes=10, env_threads=1)
    start_run("udrlpg", rc, a.out, preset="fast", overrides=overrides, quiet=True)


if __name__ == "__main__":
    main()
