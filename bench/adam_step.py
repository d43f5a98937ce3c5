#!/usr/bin/env python
"""Adam's step on a generator: the default per-tensor loop vs foreach vs fused, timed in one process.

The generator is UDRLPG `fast`'s hypernetwork for Hopper-v5 (0.85M parameters). Prints the median time of
``opt.step()`` alone and of a whole regression update (forward, backward, step), each variant interleaved.
Usage: python bench/adam_step.py
"""

from __future__ import annotations

import os
import time

import torch

from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import build


def main() -> None:
    torch.set_num_threads(1)
    algo, _, _ = build("udrlpg", RunConfig(env_id="Hopper-v5", steps=1, seed=0), None, {})
    g, p = algo.gen, algo.spec.num_params
    c, target = torch.rand(24, 1), 0.05 * torch.randn(24, p)
    kinds = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    opts = {k: torch.optim.Adam(g.parameters(), lr=1e-3, **kw) for k, kw in kinds.items()}

    def update(opt) -> None:
        loss = (g(c) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    full = {k: [] for k in opts}
    for _ in range(6):
        for k, opt in opts.items():
            t0 = time.perf_counter()
            for _ in range(10):
                update(opt)
            full[k].append((time.perf_counter() - t0) / 10)
    print(f"generator parameters {sum(q.numel() for q in g.parameters()):,}; load {os.getloadavg()[0]:.1f}")
    for k, opt in opts.items():
        (g(c) - target).pow(2).mean().backward()
        steps = []
        for _ in range(21):
            t0 = time.perf_counter()
            opt.step()
            steps.append(time.perf_counter() - t0)
        f = sorted(full[k][1:])
        print(f"{k:8s} opt.step {1e3 * sorted(steps)[10]:6.2f} ms   whole update {1e3 * f[len(f) // 2]:6.1f} ms")


if __name__ == "__main__":
    main()
