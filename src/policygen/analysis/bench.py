"""``policygen bench rollout``: the engine's throughput beside the raw backend's, measured in one run."""

from __future__ import annotations

import math
import os
import resource
import time

import numpy as np
import torch

from policygen.envs.make import env_info
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, init_thetas
from policygen.rollout.backends import make_backend, resolve_backend
from policygen.rollout.engine import RolloutEngine
from policygen.rollout.factory import make_engine


def raw_steps_per_s(env_id: str, backend: str, num_envs: int, seconds: float, seed: int = 0,
                    env_threads: int | None = None) -> float:
    """Random actions on every slot of the same backend, episodes restarted as they end."""
    info = env_info(env_id)
    be = make_backend(backend, env_id, num_envs, seed, num_threads=env_threads)
    rng = np.random.default_rng(seed)
    ids = np.arange(num_envs)
    high = np.asarray(info.action_high, dtype=np.float32)
    if not be.lazy_reset:
        be.reset(ids)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        actions = rng.uniform(-high, high, size=(num_envs, info.act_dim)).astype(np.float32)
        _, _, term, trunc = be.step(ids, actions)
        steps += num_envs
        done = np.flatnonzero(term | trunc)
        if len(done) and not be.lazy_reset:
            be.reset(done)
    rate = steps / (time.perf_counter() - t0)
    be.close()
    return rate


def engine_steps_per_s(engine, thetas: torch.Tensor, seconds: float,
                       overhead: list | None = None) -> tuple[float, int, float]:
    """(env steps/s, calls, share of the wall time spent inside the backend's step calls); a Ray engine's
    per-call overhead (driver time beyond the slowest worker) is appended to ``overhead``."""
    steps, calls, t0, b0 = 0, 0, time.perf_counter(), engine.backend_seconds
    while time.perf_counter() - t0 < seconds:
        steps += engine.evaluate(thetas, update_stats=True).env_steps
        calls += 1
        if overhead is not None and getattr(engine, "last_call", None):
            overhead.append(engine.last_call["overhead_s"])
    wall = time.perf_counter() - t0
    return steps / wall, calls, (engine.backend_seconds - b0) / wall


def bench_rollout(env_id: str, policies: int, hidden: tuple[int, ...], seconds: float, backend: str = "auto",
                  num_envs: int | None = None, seed: int = 0, rounds: int = 2, ray_address: str | None = None,
                  ray_workers: int = 0, compare_local: bool = False, env_threads: int | None = None) -> dict:
    """Engine vs raw env steps/s, alternated ``rounds`` times so machine drift hits both alike.

    ``backend="ray"``: the engine over Ray actors; raw (and, with ``compare_local``, the local engine, whose
    figure gives ``ratio_to_local``) use the environments' backend the actors use, in this process.
    ``env_threads``: EnvPool's threads or the Gymnasium backend's processes, for the engine and raw alike.
    """
    if policies < 1 or (num_envs is not None and num_envs < 1) or not 0 < seconds < math.inf:
        raise PolicygenError(f"bench rollout needs --policies >= 1, --num-envs >= 1 and a finite --seconds > 0; "
                             f"got {policies}, {num_envs}, {seconds}")
    if not hidden or min(hidden) < 1:
        raise PolicygenError(f"--hidden takes positive widths like 256,256; got {list(hidden)}")
    info = env_info(env_id)
    inner = resolve_backend("auto" if backend == "ray" else backend, env_id)
    num_envs = num_envs or min(policies, 64)
    spec = MLPSpec(info.obs_dim, info.act_dim, hidden, action_high=info.action_high)
    thetas = init_thetas(spec, policies, torch.Generator().manual_seed(seed))
    engine = make_engine(env_id, spec, num_envs=num_envs, backend=backend if backend == "ray" else inner, seed=seed,
                         ray_address=ray_address, ray_workers=ray_workers, num_threads=env_threads)
    local = (RolloutEngine(env_id, spec, num_envs=num_envs, backend=inner, seed=seed, num_threads=env_threads)
             if compare_local else None)
    for e in (engine, local):
        if e is not None:
            e.evaluate(thetas[: min(policies, num_envs)], update_stats=True)  # warm-up, fills obs statistics
    eng, raw, loc, calls, in_backend, overhead = [], [], [], 0, [], []
    steps0, batches0 = engine.env_steps, engine.batch_steps
    for _ in range(rounds):
        rate, n, share = engine_steps_per_s(engine, thetas, seconds / rounds, overhead)
        eng.append(rate)
        in_backend.append(share)
        calls += n
        raw.append(raw_steps_per_s(env_id, inner, num_envs, seconds / rounds, seed, env_threads))
        if local is not None:
            loc.append(engine_steps_per_s(local, thetas, seconds / rounds)[0])
    # the share of slot-steps that ran a policy: below 1 when a call's last long episodes run on few slots
    utilisation = (engine.env_steps - steps0) / max(1, (engine.batch_steps - batches0) * num_envs)
    out = _ray_figures(engine, overhead) if backend == "ray" else {}
    engine.close()
    e, r = float(np.mean(eng)), float(np.mean(raw))
    if local is not None:
        local.close()
        out.update(local_engine_steps_per_s=float(np.mean(loc)), ratio_to_local=e / float(np.mean(loc)))
    return {
        "env_id": env_id, "backend": backend if backend == "ray" else inner, "num_envs": num_envs,
        "env_threads": env_threads,
        "policies": policies, "hidden": list(hidden), "params_per_policy": spec.num_params, "seconds": seconds,
        "engine_steps_per_s": e, "raw_steps_per_s": r, "ratio": e / r, **out, "engine_calls": calls,
        "slot_utilisation": utilisation, "backend_share": float(np.mean(in_backend)),
        # the ratio if the forward and the engine's bookkeeping cost nothing: the backend calls alone, stepping
        # the slots this workload keeps busy at each step (few, in a call's tail of long episodes)
        "backend_only_ratio": e / r / max(float(np.mean(in_backend)), 1e-9),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
    }


def _ray_figures(engine, overhead: list[float]) -> dict:
    """What a Ray engine adds: its workers and the driver's time per call beyond the slowest worker."""
    return {"inner_backend": engine.inner_backend, "ray_workers": engine.workers,
            "slots_per_worker": engine.slots_per_stream, "faults": engine.faults,
            "overhead_s_per_call": float(np.mean(overhead)) if overhead else None,
            "overhead_s_per_call_median": float(np.median(overhead)) if overhead else None}
