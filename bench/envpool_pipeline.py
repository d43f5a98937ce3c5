#!/usr/bin/env python
"""Does pipelining EnvPool hide the engine's Python time? The floor of ARS on Swimmer (README, "ARS against
sb3-contrib").

ARS's Swimmer preset steps 8 slots per call. This times, per 8 env steps, with ``gap`` microseconds of busy
Python between calls (the engine's own work per call is ~50 us):
- ``sync``: one pool of 8 envs on 2 threads, ``_send`` then ``_recv`` (what the engine does);
- ``piped``: two pools of 4 envs on 1 thread each; while one pool steps, the other's Python runs (a
  two-stage pipeline that keeps a worker busy during the gap).
Modes alternate ``--repeats`` times in one process; the result is JSON on stdout. Meaningful only on an
otherwise idle machine (the load average is recorded).

Usage: python bench/envpool_pipeline.py [--env Swimmer-v5] > bench/results/envpool-pipeline.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import commit, machine  # noqa: E402


def busy(us: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < us * 1e-6:
        pass


def sync_us(envpool, env: str, actions: np.ndarray, gap: float) -> float:
    pool = envpool.make(env, env_type="gymnasium", num_envs=8, batch_size=8, num_threads=2, seed=0)
    pool.reset()
    ids = np.arange(8, dtype=np.int32)
    t = time.perf_counter()
    for a in actions:
        busy(gap)
        pool._send([ids, ids, a])
        pool._recv()
    pool.close()
    return (time.perf_counter() - t) / len(actions) * 1e6


def piped_us(envpool, env: str, actions: np.ndarray, gap: float) -> float:
    pools = [envpool.make(env, env_type="gymnasium", num_envs=4, batch_size=4, num_threads=1, seed=s)
             for s in (0, 1)]
    ids = np.arange(4, dtype=np.int32)
    for p in pools:
        p.reset()
        p._send([ids, ids, actions[0, :4]])
    t = time.perf_counter()
    for a in actions:
        for g, p in enumerate(pools):
            p._recv()
            busy(gap / 2)  # each half of the slots costs half the Python
            p._send([ids, ids, a[4 * g:4 * g + 4]])
    for p in pools:
        p._recv()
        p.close()
    return (time.perf_counter() - t) / len(actions) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Swimmer-v5")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import envpool

    probe = envpool.make(a.env, env_type="gymnasium", num_envs=1)
    act_dim = int(np.prod(probe.action_space.shape))
    probe.close()
    actions = np.random.default_rng(0).uniform(-1, 1, (a.calls, 8, act_dim)).astype(np.float32)
    out: dict = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
                 "commit": commit(), "command": "python bench/envpool_pipeline.py " + " ".join(sys.argv[1:]),
                 "env": a.env, "load_average_before": os.getloadavg(), "us_per_8_env_steps": {}}
    for gap in (0, 25, 50, 80):
        runs = {"sync": [], "piped": []}
        for _ in range(a.repeats):
            runs["sync"].append(round(sync_us(envpool, a.env, actions, gap), 1))
            runs["piped"].append(round(piped_us(envpool, a.env, actions, gap), 1))
        out["us_per_8_env_steps"][f"gap_{gap}us"] = runs
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
