"""Measured model of the ray backend's scaling: throughput with 1 and 2 workers here, per-call overhead,
and predicted throughput on 8, 64 and 512 CPUs.

    .venv/bin/python bench/ray_scaling.py [--seconds 20] [--out bench/results/ray-scaling]

Writes OUT.json and OUT.md (date, machine, commit, load average). Three measurements, in one process on
a local cluster of 2 CPUs:
1. ``policygen bench rollout --backend ray --compare-local`` for 256 policies of 2x256 on Hopper-v5
   (``ratio_to_local``, the issue's figure);
2. 1 and 2 workers at 32 slots each, 256 policies: env steps/s, driver wall per call, the slowest worker's
   wall per call, and the overhead = driver wall - slowest worker wall (ray.put of the chunks, scheduling,
   gathering, the statistics merge);
3. one worker at chunk sizes 32..256: worker wall per call, fitted as ``t(b) = t0 + b * t1`` (t0: the tail
   of a call's longest episodes and fixed costs; t1: cost per policy).
Prediction for N CPUs (one worker each) and B policies per call, chunks of b = B / N:
``steps/s = B * steps_per_policy / (t(b) + overhead(N))``, with ``overhead(N) = o0 + o1 * N`` fitted on the
1- and 2-worker overheads. It leaves out what one machine cannot show: network latency between nodes
(~0.1-1 ms per chunk on a LAN) and the driver's own limits at hundreds of chunks (object store puts,
one ``ray.wait`` per chunk), so the 512-CPU figure is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from policygen.analysis.bench import bench_rollout
from policygen.envs.make import env_info
from policygen.policies.flat_mlp import MLPSpec, init_thetas
from policygen.rollout import make_engine, ray_engine

ENV, HIDDEN, POLICIES, SLOTS = "Hopper-v5", (256, 256), 256, 32


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores"


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent)
    return out.stdout.strip()


def measure(workers: int, thetas: torch.Tensor, spec: MLPSpec, seconds: float) -> dict:
    """Calls of ``len(thetas)`` policies on ``workers`` workers of SLOTS slots each, for ``seconds``."""
    eng = make_engine(ENV, spec, num_envs=SLOTS * workers, backend="ray", ray_workers=workers, seed=0)
    eng.evaluate(thetas[: SLOTS * workers], update_stats=True)  # warm-up: streams built, statistics filled
    calls, steps, t0 = [], 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        steps += eng.evaluate(thetas, update_stats=True).env_steps
        calls.append(dict(eng.last_call))
    wall = time.perf_counter() - t0
    eng.close()
    med = lambda k: float(np.median([c[k] for c in calls]))  # noqa: E731
    return {"workers": workers, "policies": len(thetas), "slots_per_worker": SLOTS, "calls": len(calls),
            "steps_per_s": steps / wall, "steps_per_policy": steps / (len(calls) * len(thetas)),
            "driver_wall_s_median": med("wall_s"),
            "slowest_worker_s_median": float(np.median([max(c["worker_wall_s"]) for c in calls])),
            "overhead_s_median": med("overhead_s"),
            "overhead_s_mean": float(np.mean([c["overhead_s"] for c in calls])),
            "worker_cpu_per_wall": float(sum(sum(c["worker_cpu_s"]) for c in calls)
                                         / sum(sum(c["worker_wall_s"]) for c in calls))}


def fit_worker(chunks: list[dict]) -> tuple[float, float]:
    """``t(b) = t0 + b * t1`` by least squares with ``t0 >= 0`` (a loaded machine can tilt a free fit)."""
    b = np.array([c["policies"] for c in chunks], float)
    t = np.array([c["slowest_worker_s_median"] for c in chunks])
    t1, t0 = np.polyfit(b, t, 1)
    if t0 < 0:
        t0, t1 = 0.0, float(b @ t / (b @ b))
    return float(t0), float(t1)


def fit_overhead(chunks: list[dict], two: dict) -> tuple[float, float, float]:
    """``overhead = o0 + B * oB + (N - 1) * oN``: per call, per policy shipped, per extra chunk."""
    b = np.array([c["policies"] for c in chunks], float)
    o = np.array([c["overhead_s_median"] for c in chunks])
    ob, o0 = np.polyfit(b, o, 1)
    one = o0 + ob * two["policies"]
    return float(max(o0, 0.0)), float(max(ob, 0.0)), float(max(two["overhead_s_median"] - one, 0.0))


def predict(res: dict) -> list[dict]:
    """Per call: ``max(t_wave, t0 + t1 * B / N) + o0 + oB * B + oN * (N - 1)``; ``t_wave`` (one wave of
    SLOTS policies, set by its longest episode) is the least a call can take."""
    (t0, t1), (o0, ob, on) = res["fit_worker_s"], res["fit_overhead_s"]
    t_wave, spp = res["chunks"][0]["slowest_worker_s_median"], res["steps_per_policy"]
    rows = []
    for n in (1, 2, 8, 64, 512):
        for b_total in (256, 1024, 4096):
            work = max(t_wave, t0 + t1 * b_total / n)
            over = o0 + ob * b_total + on * (n - 1)
            rows.append({"cpus": n, "policies_per_call": b_total, "policies_per_worker": b_total / n,
                         "call_s": work + over, "steps_per_s": b_total * spp / (work + over),
                         "overhead_share": over / (work + over)})
    return rows


def report(res: dict) -> str:
    c = res["compare"]
    lines = [f"# Ray backend: scaling measured and modelled ({res['date']})", "",
             f"Machine: {res['machine']}, shared with other jobs (load average {res['load_start'][0]:.2f} at start, "
             f"{res['load_end'][0]:.2f} at end); commit {res['commit']}; command `{res['command']}`.", "",
             f"Hopper-v5, {POLICIES} random policies of 2x256 per call. `bench rollout --backend ray --compare-local`: "
             f"ray {c['engine_steps_per_s']:.0f} steps/s, local {c['local_engine_steps_per_s']:.0f}"
             f" steps/s, **ratio_to_local {c['ratio_to_local']:.2f}** (target >= 0.7).", "",
             "| workers | steps/s | driver wall / call | slowest worker / call | overhead / call (median) "
             "| worker CPU / wall |", "|---:|---:|---:|---:|---:|---:|"]
    for m in res["measured"]:
        lines.append(f"| {m['workers']} | {m['steps_per_s']:.0f} | {m['driver_wall_s_median']:.3f} s | "
                     f"{m['slowest_worker_s_median']:.3f} s | {m['overhead_s_median'] * 1000:.1f} ms | "
                     f"{m['worker_cpu_per_wall']:.2f} |")
    t0, t1 = res["fit_worker_s"]
    o0, ob, on = res["fit_overhead_s"]
    lines += ["", "| one worker, policies per call | worker wall / call | overhead / call |", "|---:|---:|---:|"]
    lines += [f"| {c['policies']} | {c['slowest_worker_s_median']:.3f} s | {c['overhead_s_median'] * 1000:.1f} ms |"
              for c in res["chunks"]]
    lines += ["", f"Model: worker time t(b) = {t0:.3f} s + b x {t1 * 1000:.2f} ms, at least one wave "
              f"({res['chunks'][0]['slowest_worker_s_median']:.3f} s); overhead = {o0 * 1000:.1f} ms + B x "
              f"{ob * 1000:.3f} ms + (N - 1) x {on * 1000:.2f} ms; {res['steps_per_policy']:.1f} env steps per "
              "policy (random 2x256 policies: trained ones last longer, which shrinks the overhead's share).", "",
              "| CPUs | policies / call | per worker | call | predicted steps/s | overhead share |",
              "|---:|---:|---:|---:|---:|---:|"]
    for p in res["predicted"]:
        lines.append(f"| {p['cpus']} | {p['policies_per_call']} | {p['policies_per_worker']:.0f} | "
                     f"{p['call_s']:.3f} s | {p['steps_per_s']:.0f} | {p['overhead_share']:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per configuration")
    ap.add_argument("--out", default="bench/results/ray-scaling", help="OUT.json and OUT.md")
    a = ap.parse_args()
    load_start = os.getloadavg()
    ray_engine.connect(None, 2)
    compare = bench_rollout(ENV, POLICIES, HIDDEN, 2 * a.seconds, backend="ray", compare_local=True)
    info = env_info(ENV)
    spec = MLPSpec(info.obs_dim, info.act_dim, HIDDEN, action_high=info.action_high)
    thetas = init_thetas(spec, POLICIES, torch.Generator().manual_seed(0))
    measured = [measure(w, thetas, spec, a.seconds) for w in (1, 2)]
    chunks = [measure(1, thetas[:b], spec, a.seconds / 2) for b in (32, 64, 128)] + [measured[0]]
    spp = float(np.mean([m["steps_per_policy"] for m in measured]))
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "commit": commit(),
           "command": " ".join(["python", *sys.argv]), "load_start": load_start, "compare": compare,
           "measured": measured, "chunks": chunks, "fit_worker_s": fit_worker(chunks),
           "fit_overhead_s": fit_overhead(chunks, measured[1]), "steps_per_policy": spp}
    res["predicted"] = predict(res)
    res["load_end"] = os.getloadavg()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    out.with_suffix(".md").write_text(report(res))
    print(report(res))
    ray_engine.shutdown()


if __name__ == "__main__":
    main()
