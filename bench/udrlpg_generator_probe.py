"""What a UDRLPG run's generator does with its command and (for generator=cvae) its latent.

    python bench/udrlpg_generator_probe.py RUN_DIR [RUN_DIR ...]

Prints JSON per run: the buffer's return percentiles, |G(c) - G(1)| for c in 0, .25, .5, .75 (how much the
command moves the generated weights), and for a CVAE the spread of the encoder's means over the buffer, their
mean log-variance, and the reconstruction MSE with the encoder's mean z against z = 0 (equal: the latent
carries nothing).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from policygen.algorithms.loading import load_run


def probe(run_dir: str) -> dict:
    algo = load_run(run_dir).algo
    entries = [e for lst in algo.buffer._entry_lists() for e in lst]
    returns = np.array([e[1] for e in entries])
    thetas = torch.stack([e[2] for e in entries]).float()
    scaled = torch.tensor(algo.buffer.scale(returns), dtype=torch.float32).unsqueeze(1)
    out = {"run": run_dir, "generator": algo.config.generator, "stored": len(entries),
           "return_percentiles_0_10_50_90_100": np.percentile(returns, [0, 10, 50, 90, 100]).round(1).tolist()}
    with torch.no_grad():
        g = algo.gen(torch.linspace(0, 1, 5).unsqueeze(1))
        out["dist_G(c)_G(1)"] = {f"{c:.2f}": round(float((g[i] - g[-1]).norm()), 4)
                                 for i, c in enumerate(np.linspace(0, 1, 5)[:-1])}
        if hasattr(algo.gen, "encode"):
            mu, logvar = algo.gen.encode(scaled, thetas)
            out["encoder_mu_std_mean"] = round(float(mu.std(0).mean()), 4)
            out["encoder_logvar_mean"] = round(float(logvar.mean()), 4)
            out["recon_mse_encoder_z"] = float(((algo.gen(scaled, mu) - thetas) ** 2).mean())
            out["recon_mse_zero_z"] = float(((algo.gen(scaled) - thetas) ** 2).mean())
    return out


if __name__ == "__main__":
    for run in sys.argv[1:]:
        print(json.dumps(probe(run)))
