#!/usr/bin/env python
"""GoGePo's cost in the official code's units: seconds per episode and per generator step, `paper` vs `fast`,
with 1 and 2 torch threads, each configuration timed for the same wall budget in its own process, one after
the other (alternating rounds), on Hopper-v5 from scratch. Also the share of a `fast` iteration spent in the
rollout, the evaluator updates and the generator updates (the algorithm's own phase timers).

The official code needs ~20 s per episode (~0.9 s per generator step, 23 gradient steps per episode) on this
kind of machine (METHODS.md). Usage:
    python bench/gogepo_cost.py --seconds 60 --rounds 2 --out bench/results/gogepo-cost
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from learning import commit, machine  # noqa: E402


def worker(preset: str, threads: int, env: str, seconds: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    from policygen.algorithms.base import make_config
    from policygen.algorithms.gogepo import GoGePo, GoGePoConfig
    from policygen.envs.make import env_info
    from policygen.rollout.engine import RolloutEngine

    # no generator warm-up, so every iteration pays for both updates from the first one
    cfg = make_config(GoGePoConfig, GoGePo.presets[preset], {"generator_warmup": "0"})
    algo = GoGePo(cfg, env_info(env), 0)
    eng = RolloutEngine(env, algo.spec, num_envs=16, seed=0, return_convention=algo.return_convention)
    t0, episodes, iterations = time.perf_counter(), 0, 0
    while time.perf_counter() - t0 < seconds:
        episodes += algo.iterate(eng)["episodes"]
        iterations += 1
    wall = time.perf_counter() - t0
    p = algo.profile
    return {"preset": preset, "torch_threads": threads, "env": env, "wall_s": wall, "iterations": iterations,
            "episodes": episodes, "env_steps": eng.env_steps, "s_per_episode": wall / episodes,
            "s_per_generator_step": p["generator"] / (iterations * cfg.generator_steps),
            "s_per_evaluator_step": p["evaluator"] / (iterations * cfg.evaluator_steps),
            "generator_steps_per_episode": iterations * cfg.generator_steps / episodes,
            "share": {k: v / wall for k, v in p.items()}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench/results/gogepo-cost")
    ap.add_argument("--worker", nargs=2, metavar=("PRESET", "THREADS"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]), a.env, a.seconds)))
        return 0
    runs = []
    for _ in range(a.rounds):
        for preset in ("paper", "fast"):
            for threads in (1, 2):
                load = os.getloadavg()[0]
                out = subprocess.run([sys.executable, __file__, "--worker", preset, str(threads), "--env", a.env,
                                      "--seconds", str(a.seconds)], capture_output=True, text=True, check=True)
                runs.append({**json.loads(out.stdout.strip().splitlines()[-1]), "load_before": load})
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    meta = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
            "commit": commit(), "command": "python bench/gogepo_cost.py " + " ".join(sys.argv[1:])}
    Path(a.out + ".json").write_text(json.dumps({**meta, "runs": runs}, indent=2))
    lines = [f"# GoGePo cost on {a.env}: seconds per episode and per generator step", "",
             f"{meta['date']}, {meta['machine']}, commit {meta['commit'][:10]}. Re-run: `{meta['command']}`. "
             f"Each row: one process, {a.seconds:.0f} s of training from scratch; load average before each run "
             "in the last column (2 cores: above ~1 another job shared them).", "",
             "| preset | torch threads | episodes | env steps | s / episode | s / generator step | "
             "generator steps / episode | rollout / evaluator / generator share | load |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in runs:
        sh = r["share"]
        lines.append(f"| {r['preset']} | {r['torch_threads']} | {r['episodes']} | {r['env_steps']:,} | "
                     f"{r['s_per_episode']:.3f} | {r['s_per_generator_step']:.4f} | "
                     f"{r['generator_steps_per_episode']:.2f} | {sh['rollout']:.2f} / {sh['evaluator']:.2f} / "
                     f"{sh['generator']:.2f} | {r['load_before']:.1f} |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
