#!/usr/bin/env python
"""Exported policies against policygen's own forward: max |action difference| and returns on the same seed.

For each policy: play ``--episodes`` episodes with policygen's ``Policy`` (numpy in, torch forward), collect
every observation visited, compute the actions of the TorchScript file (through torch) and the ONNX file
(through onnxruntime) on those observations, and play the same seeds with each file as the policy.
Policies: random GoGePo-sized (11-256-256-3 tanh) and ARS-sized (linear, clipped) policies on Hopper-v5 with
random observation statistics, plus every run directory given with ``--run`` (its evaluation policy, or
its output for ``--command``). Usage:
    python bench/export_parity.py --episodes 3 --run runs/ip --out bench/results/export-parity
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from learning import commit, machine  # noqa: E402

from policygen.analysis.play import play  # noqa: E402
from policygen.policies import MLPSpec, Policy, init_thetas  # noqa: E402
from policygen.policies.export import load_exported  # noqa: E402
from policygen.policies.io import save_policy  # noqa: E402


def random_policy(spec: MLPSpec, seed: int, env_id: str) -> Policy:
    theta = init_thetas(spec, 1, torch.Generator().manual_seed(seed))[0]
    rng = np.random.default_rng(seed)
    return Policy(spec, theta, rng.normal(scale=0.5, size=spec.obs_dim), rng.uniform(0.5, 2, spec.obs_dim),
                  {"env_id": env_id})


def compare(name: str, policy: Policy, env_id: str, episodes: int, seed: int, folder: Path) -> dict:
    ours = play(policy, env_id, episodes, seed, env_kwargs=policy.meta.get("env_kwargs"), keep_actions=True)
    obs = np.concatenate(ours.observations)
    row = {"policy": name, "spec": policy.spec.describe(), "env_id": env_id, "episodes": episodes, "seed": seed,
           "observations": len(obs), "policygen_returns": ours.returns, "lengths": ours.lengths,
           "policygen_mean_return": float(np.mean(ours.returns))}
    for suffix in (".pt", ".onnx"):
        exported = load_exported(save_policy(policy, folder / f"{name}{suffix}", force=True))
        diff = float(np.abs(exported(obs) - policy(obs)).max())
        rets = play(exported, env_id, episodes, seed, env_kwargs=policy.meta.get("env_kwargs")).returns
        row[exported.runtime] = {"max_abs_action_diff": diff, "returns": rets, "mean_return": float(np.mean(rets)),
                                 "same_returns": rets == ours.returns,
                                 "max_abs_return_diff": float(np.max(np.abs(np.subtract(rets, ours.returns))))}
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", action="append", default=[], help="run directory to export too (repeatable)")
    ap.add_argument("--command", type=float, help="command for generator runs (default: evaluation policy)")
    ap.add_argument("--out", default="bench/results/export-parity")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, spec in (("gogepo-sized-random", MLPSpec(11, 3, (256, 256), "tanh", "tanh", (1.0,) * 3)),
                           ("ars-sized-random", MLPSpec(11, 3, (), "tanh", "clip", (1.0,) * 3))):
            rows.append(compare(name, random_policy(spec, a.seed, a.env), a.env, a.episodes, a.seed, folder))
        for run in a.run:
            import policygen

            loaded = policygen.load(run)
            policy = loaded.policy(a.command)
            rows.append(compare(Path(run).name, policy, loaded.run_config.env_id, a.episodes, a.seed, folder))
    result = {"date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "load_average": os.getloadavg(), "commit": commit(), "command": " ".join(sys.argv), "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['policy']:<24} {r['env_id']:<20} obs {r['observations']:>5}  "
              + "  ".join(f"{k}: max|da| {r[k]['max_abs_action_diff']:.2e} same returns {r[k]['same_returns']}"
                          for k in ("torchscript", "onnxruntime"))
              + f"  mean return policygen {r['policygen_mean_return']:.2f} torchscript "
              f"{r['torchscript']['mean_return']:.2f} onnx {r['onnxruntime']['mean_return']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
