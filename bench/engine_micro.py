#!/usr/bin/env python
"""Microbenchmarks behind the engine's design and its EnvPool ratio (README, "Rollout engine"):

1. one 256x256 layer of 64 different policies on one observation each: torch.bmm vs numpy matmul (BLAS gemv);
2. EnvPool's cost per `step` call against the number of slots stepped (its fixed per-call latency);
3. a raw EnvPool step with and without the policies' forward between steps (the forward's cache footprint);
4. our backends' step call by slots stepped, alternated three times: EnvPool through its public ``step``,
   through the direct ``_send``/``_recv`` path (2 threads, and 1), the in-process Gymnasium backend and the
   ``mujoco`` backend (mujoco.batch, for its tasks); and, for 8 slots, the same with 50 us of Python between calls
   (about the engine's own work per call: threads that sleep between calls take time to wake).

Usage: python bench/engine_micro.py [--env Hopper-v5] > bench/results/engine-micro.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import commit, machine  # noqa: E402

from policygen.envs.make import env_info  # noqa: E402
from policygen.policies.flat_mlp import MLPSpec, act_numpy, init_thetas  # noqa: E402


def per_call_us(f, seconds: float = 1.0) -> float:
    for _ in range(10):
        f()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        f()
        n += 1
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Hopper-v5")
    a = ap.parse_args()
    import envpool

    torch.set_num_threads(1)
    out: dict = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
                 "commit": commit(), "command": "python bench/engine_micro.py " + " ".join(sys.argv[1:]),
                 "env": a.env, "load_average_before": os.getloadavg()}
    w = torch.randn(64, 256, 256)
    x = torch.randn(64, 256, 1)
    wn, xn = w.numpy(), x.numpy()
    out["layer_256x256_64_policies_us"] = {"torch_bmm": per_call_us(lambda: torch.bmm(w, x)),
                                           "numpy_matmul": per_call_us(lambda: np.matmul(wn, xn))}

    info = env_info(a.env)
    pool = envpool.make(a.env, env_type="gymnasium", num_envs=64, batch_size=64, num_threads=2, seed=0)
    obs, _ = pool.reset()
    rng = np.random.default_rng(0)
    high = np.asarray(info.action_high, dtype=np.float32)
    out["envpool_step_call_us_by_slots"] = {}
    for n in (64, 32, 8, 2, 1):
        ids = np.arange(n)
        out["envpool_step_call_us_by_slots"][n] = per_call_us(
            lambda ids=ids: pool.step(rng.uniform(-high, high, (len(ids), info.act_dim)).astype(np.float32), ids), 2)

    spec = MLPSpec(info.obs_dim, info.act_dim, (256, 256), action_high=info.action_high)
    rows = init_thetas(spec, 64, torch.Generator().manual_seed(0)).numpy()
    ids = np.arange(64)
    cache = {}
    for mode in ("random actions", "random actions + forward between steps"):
        t_step, n, t0 = 0.0, 0, time.perf_counter()
        while time.perf_counter() - t0 < 4:
            if mode.endswith("steps"):
                act_numpy(spec, rows, obs.astype(np.float32))
            actions = rng.uniform(-high, high, (64, info.act_dim)).astype(np.float32)
            t = time.perf_counter()
            obs = pool.step(actions, ids)[0]
            t_step += time.perf_counter() - t
            n += 64
        cache[mode] = t_step / n * 1e6
    out["envpool_step_us_per_env_step"] = cache
    pool.close()

    from policygen.rollout.backends import EnvPoolBackend, GymnasiumBackend, mujoco_batch_has

    paths = {"public": EnvPoolBackend(a.env, 64, 0), "direct": EnvPoolBackend(a.env, 64, 0),
             "direct_1_thread": EnvPoolBackend(a.env, 64, 0, num_threads=1),
             "gymnasium": GymnasiumBackend(a.env, 64, 0)}
    if mujoco_batch_has(a.env):
        from policygen.rollout.mujoco_backend import MujocoBatchBackend
        paths["mujoco"] = MujocoBatchBackend(a.env, 64, 0)
    paths["public"]._direct = None
    for name in ("gymnasium", "mujoco"):
        if name in paths:
            paths[name].reset(np.arange(64))

    def step(be, ids):
        term, trunc = be.step(ids, rng.uniform(-high, high, (len(ids), info.act_dim)))[2:]
        if not be.lazy_reset and (term | trunc).any():
            be.reset(ids[term | trunc])

    def python_between(us: float = 50.0):
        end = time.perf_counter() + us * 1e-6
        while time.perf_counter() < end:
            pass

    calls: dict = {name: {n: [] for n in (64, 8, 1)} for name in paths}
    gapped: dict = {name: [] for name in paths}
    for _ in range(3):
        for name, be in paths.items():
            for n in (64, 8, 1):
                ids = np.arange(n)
                calls[name][n].append(per_call_us(lambda be=be, ids=ids: step(be, ids), 1))
            ids = np.arange(8)
            gapped[name].append(per_call_us(lambda be=be, ids=ids: (step(be, ids), python_between()), 1) - 50.0)
    out["backend_step_call_us_by_slots"] = {name: {n: float(np.median(v)) for n, v in d.items()}
                                            for name, d in calls.items()}
    out["backend_step_call_us_8_slots_50us_python_between"] = {name: float(np.median(v))
                                                               for name, v in gapped.items()}
    for be in paths.values():
        be.close()
    out["load_average_after"] = os.getloadavg()  # on 2 cores, above ~1 means another job shared them
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
