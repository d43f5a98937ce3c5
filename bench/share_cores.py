"""Two engines at once on the same cores: env steps/s of each, Gymnasium backend in one process or spread over
``--procs`` processes. Hopper-v5, 64 policies of 2x256 on 16 slots, as bench/rollout_procs.sh.

Usage: python bench/share_cores.py [--procs 1,2] [--seconds 15]
"""

import argparse
import json
import subprocess
import sys
import time


def one(procs: int, seconds: float) -> float:
    import torch

    from policygen.envs.make import env_info
    from policygen.policies.flat_mlp import MLPSpec, init_thetas
    from policygen.rollout import RolloutEngine

    info = env_info("Hopper-v5")
    spec = MLPSpec(info.obs_dim, info.act_dim, (256, 256), action_high=info.action_high)
    thetas = init_thetas(spec, 64, torch.Generator().manual_seed(0))
    eng = RolloutEngine("Hopper-v5", spec, num_envs=16, backend="gymnasium", seed=0, num_threads=procs)
    eng.evaluate(thetas[:2])
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        steps += eng.evaluate(thetas).env_steps
    rate = steps / (time.perf_counter() - t0)
    eng.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one engine, prints its steps/s
    a = ap.parse_args()
    if a.one is not None:
        print(one(a.one, a.seconds))
        return
    for procs in (int(p) for p in a.procs.split(",")):
        cmd = [sys.executable, __file__, "--one", str(procs), "--seconds", str(a.seconds)]
        kids = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        rates = [float(k.communicate()[0]) for k in kids]
        print(json.dumps({"processes_per_run": procs, "runs": 2, "steps_per_s_each": [round(r) for r in rates]}))


if __name__ == "__main__":
    main()
