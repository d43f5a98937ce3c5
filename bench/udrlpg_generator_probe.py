"""What a UDRLPG run's generator does with its command and (for generator=cvae) its latent.

    python bench/udrlpg_generator_probe.py RUN_DIR [RUN_DIR ...] [--nearest]

Prints JSON per run: the buffer's return percentiles, |G(c) - G(1)| for c in 0, .25, .5, .75 (how much the
command moves the generated weights), and for a CVAE the spread of the encoder's means over the buffer, their
mean log-variance, and the reconstruction MSE with the encoder's mean z against z = 0 (equal: the latent
carries nothing).

With ``--nearest`` (after ``policygen sweep RUN``): for each command of RUN/sweep.json, the stored policy whose
label is nearest is re-run 5 episodes; prints the sweep's G(c) return beside it, both errors as % of the
command range, and |G(c) - theta| / |theta|: is G as calibrated as the policies it was fitted to, and how far
from them does it sit?
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.loading import load_run
from policygen.rollout.engine import RolloutEngine


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


def nearest(run_dir: str, episodes: int = 5) -> dict:
    loaded = load_run(run_dir)
    algo = loaded.algo
    entries = [e for lst in algo.buffer._entry_lists() for e in lst]
    labels = np.array([e[1] for e in entries])
    sweep = json.loads((Path(run_dir) / "sweep.json").read_text())
    commands, achieved = np.array(sweep["commands"]), np.array(sweep["achieved_mean"])
    idx = [int(np.argmin(np.abs(labels - c))) for c in commands]
    thetas = torch.stack([entries[i][2] for i in idx]).float()
    engine = RolloutEngine(loaded.run_config.env_id, algo.spec, num_envs=32, seed=11, num_threads=1,
                           return_convention=algo.return_convention)
    engine.obs_stats = loaded.obs_stats
    stored_now = engine.evaluate(thetas, episodes=episodes).train_returns
    width = commands[-1] - commands[0]
    dist = ((algo.generate(commands) - thetas).norm(dim=1) / thetas.norm(dim=1)).numpy()
    for c, a, lab, now, d in zip(commands, achieved, labels[idx], stored_now, dist, strict=True):
        print(f"command {c:8.1f}: G(c) earns {a:8.1f}; nearest stored (label {lab:8.1f}) earns {now:8.1f}; "
              f"|G(c) - theta| / |theta| {d:.2f}", file=sys.stderr)
    return {"run": run_dir, "commands": commands.round(1).tolist(), "generated": achieved.round(1).tolist(),
            "nearest_label": labels[idx].round(1).tolist(), "nearest_now": stored_now.round(1).tolist(),
            "mae_frac_generated": float(np.abs(achieved - commands).mean() / width),
            "mae_frac_nearest_stored": float(np.abs(stored_now - commands).mean() / width),
            "relative_distance_mean": float(dist.mean())}


if __name__ == "__main__":
    torch.set_num_threads(1)
    runs = [a for a in sys.argv[1:] if a != "--nearest"]
    for run in runs:
        print(json.dumps(nearest(run) if "--nearest" in sys.argv else probe(run)))
