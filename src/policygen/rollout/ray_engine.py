"""The ``ray`` backend: the rollout engine spread over a pool of Ray actors, one machine or many.

Each actor owns local ``RolloutEngine`` s (EnvPool or Gymnasium inside, one CPU each). The driver-side
``RayRolloutEngine`` has the local engine's interface: ``evaluate`` splits the thetas into one contiguous
chunk per *stream* (one stream per worker, fixed for the engine's life), ``ray.put`` s each chunk as one
numpy array, ships the driver's observation statistics (frozen for the call), and gathers returns,
lengths, failures, trajectories and statistics in the original order; it merges the statistics exactly
and counts env steps once, on the driver.

Determinism. Stream ``c`` is a local engine of ``ceil(num_envs / streams)`` slots seeded from
``(seed, c)`` (stream 0 with ``seed`` itself), whose environments carry on from call to call exactly as a
local engine's do. Results depend on (seed, number of streams, calls since the last ``reseed``), never on
which actor hosts a stream or finishes first; with one worker they equal the local engine's bit for bit.

Faults. When an actor dies mid-call, its chunk is evaluated again on a surviving actor (Ray restarts the
dead one; streams are spread over the live actors again at the next ``reseed``). The dead actor's partial
results never reach the driver, so no policy is lost or counted twice and ``env_steps`` stays exact. The
lost stream is rebuilt from ``(stream seed, call index)``: the re-evaluated chunk sees other initial
states than it would have without the fault, as does that stream until the next ``reseed``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
import warnings

import numpy as np
import torch

from policygen.envs.make import EnvInfo
from policygen.envs.stats import RunningStats
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.rollout.backends import resolve_backend
from policygen.rollout.engine import RolloutEngine, RolloutResult, checked_env

RAY_MISSING = "the ray backend needs Ray, which is not installed: pip install 'policygen[ray]' (or pip install ray)"


def import_ray():
    try:
        import ray
    except ImportError:
        raise PolicygenError(RAY_MISSING) from None
    return ray


def stream_seed(seed: int, stream: int, call: int = 0) -> int:
    """Env seed of ``stream`` built at ``call`` calls after a reseed (0: the stream's own seed)."""
    if stream == 0 and call == 0:
        return int(seed)  # one worker replays the local engine exactly
    key = [int(seed), stream] if call == 0 else [int(seed), stream, call]
    return int(np.random.SeedSequence(key).generate_state(1)[0] % (2**31 - 1))


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """One clear line when nothing listens at ``address`` (ray.init would retry for a minute)."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise PolicygenError(f"--ray-address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise PolicygenError(f"no Ray cluster reachable at --ray-address {address!r} ({e.strerror or e}); "
                             f"start one with `ray start --head --port {port}` or omit --ray-address for a "
                             f"local cluster") from None


def connect(address: str | None = None, workers: int | None = None) -> None:
    """Join the cluster at ``address``, or start a local one of ``workers`` CPUs (default: all)."""
    ray = import_ray()
    if address:
        check_address(address)
    if ray.is_initialized():
        return
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as e:  # ray raises ConnectionError, RuntimeError, ... with long texts
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PolicygenError(f"cannot join the Ray cluster at --ray-address {address!r}: {msg}") from None
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, **quiet)


class _Worker:
    """One Ray actor: local engines keyed by (engine key, stream), evaluated on request."""

    def __init__(self):
        torch.set_num_threads(1)
        self.engines: dict[tuple[str, int], RolloutEngine] = {}

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, key: str, stream: int, cfg: dict, seed: int, fresh: bool, jobs: np.ndarray,
                 stats: tuple, record: bool) -> dict:
        """One episode of each of ``jobs (b, P)`` on the stream's engine, built from ``seed`` if ``fresh`` or
        absent; ``stats`` (count, mean, m2) normalise the observations (frozen)."""
        t0, c0 = time.perf_counter(), time.process_time()
        eng = self.engines.get((key, stream))
        built = eng is None or fresh
        if eng is None:
            eng = self.engines[(key, stream)] = RolloutEngine(**cfg, seed=seed)
        elif fresh:
            eng.reseed(seed)
        eng.obs_stats.count, eng.obs_stats.mean, eng.obs_stats.m2 = stats[0], stats[1].copy(), stats[2].copy()
        b0, s0, f0 = eng.batch_steps, eng.backend_seconds, eng.failures
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the object store's arrays are read-only; the engine only reads
            res = eng.evaluate(torch.from_numpy(jobs), record=record)
        st = res.obs_stats
        return {"returns": res.returns, "train_returns": res.train_returns, "lengths": res.lengths,
                "failed": res.failed, "steps": res.env_steps, "failures": eng.failures - f0,
                "last_fault": eng.last_fault if eng.failures > f0 else None,
                "trajectories": res.trajectories, "stats": (st.count, st.mean, st.m2), "built": built,
                "successes": res.successes,
                "slot_steps": (eng.batch_steps - b0) * eng.num_envs, "backend_s": eng.backend_seconds - s0,
                "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "pid": os.getpid()}

    def drop(self, key: str, stream: int | None = None) -> None:
        for k in [k for k in self.engines if k[0] == key and stream in (None, k[1])]:
            self.engines.pop(k).close()


_POOL: dict = {}


def worker_pool(workers: int | None) -> list:
    """The first ``workers`` (default: one per CPU of the cluster) of the process's actors, made once and
    shared by every Ray engine of the process (a run's training and evaluation engines use the same)."""
    ray = import_ray()
    n = int(workers or ray.cluster_resources().get("CPU", 1))
    actors = _POOL.setdefault("actors", [])
    if len(actors) < n:
        cls = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(_Worker)
        actors.extend(cls.remote() for _ in range(n - len(actors)))
    return actors[:n]


def shutdown() -> None:
    """Kill the pool's actors and leave the cluster (a local cluster stops)."""
    ray = import_ray()
    for a in _POOL.pop("actors", []):
        ray.kill(a)
    if ray.is_initialized():
        ray.shutdown()


class RayRolloutEngine:
    """``RolloutEngine``'s interface over Ray actors (see the module docstring for seeds and faults).

    ``num_envs`` is the slots of the whole pool: each of the ``workers`` streams gets
    ``ceil(num_envs / workers)``. ``backend`` is the environments' backend inside the actors.
    """

    backend_name = "ray"

    def __init__(self, env_id: str, spec: MLPSpec, num_envs: int = 64, backend: str = "auto", seed: int = 0,
                 return_convention: str = "standard", normalize_obs: bool = True,
                 env_kwargs: dict | None = None, num_threads: int | None = None,
                 address: str | None = None, workers: int | None = None, max_retries: int | None = None,
                 tolerate_faults: bool = False, step_timeout: float = 0.0):
        if workers is not None and workers < 0:
            raise PolicygenError(f"--ray-workers must be >= 1 (0 or unset: one per CPU), got {workers}")
        self.info: EnvInfo = checked_env(env_id, spec, return_convention, env_kwargs)
        self.env_id, self.spec, self.num_envs = env_id, spec, int(num_envs)
        self.inner_backend = resolve_backend(backend, env_id)
        self.return_convention, self.normalize_obs = return_convention, normalize_obs
        connect(address, workers)
        self._ray = import_ray()
        self.actors = worker_pool(workers or None)
        self.workers = len(self.actors)
        self.slots_per_stream = max(1, math.ceil(self.num_envs / self.workers))
        self._cfg = dict(env_id=env_id, spec=spec, num_envs=self.slots_per_stream, backend=self.inner_backend,
                         return_convention=return_convention, normalize_obs=normalize_obs,
                         env_kwargs=env_kwargs, num_threads=num_threads or 1, tolerate_faults=tolerate_faults,
                         step_timeout=step_timeout)
        self.tolerate_faults = tolerate_faults
        self.failures = 0
        """Episodes the environments spoiled (tolerant engines), as ``RolloutEngine.failures``."""
        self.last_fault: str | None = None
        self._key = uuid.uuid4().hex
        self.max_retries = 3 * self.workers if max_retries is None else max_retries
        self.obs_stats = RunningStats(self.info.obs_dim)
        self.env_steps = 0
        self.batch_steps = 0.0
        """Slot-steps of all streams / ``num_envs`` (so ``env_steps / (batch_steps * num_envs)`` is utilisation)."""
        self.backend_seconds = 0.0
        """Wall time of the actors inside their backends' step calls, summed over actors."""
        self.faults = 0
        """Chunks re-evaluated because their actor died."""
        self.last_call: dict = {}
        """Timing of the last ``evaluate``: driver wall, each chunk's worker wall and CPU time (all its threads;
        CPU / wall well below 1 means the actor waited for a core), overhead beyond the slowest worker."""
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Every stream starts afresh from ``(seed, stream)`` at its next call; streams are spread again."""
        self.seed = int(seed)
        self._calls = 0
        for a, c in getattr(self, "_hosted", set()):
            if a != c:  # a stream moved after a fault goes back to its own actor: free the survivor's copy
                self.actors[a].drop.remote(self._key, c)
        self._hosted = {(c, c) for c in range(self.workers)}
        self._fresh = [True] * self.workers
        self._owner = list(range(self.workers))  # stream c on actor c (a restarted actor takes its own back)

    def close(self) -> None:
        if self.actors:
            self._ray.wait([a.drop.remote(self._key) for a in self.actors], num_returns=len(self.actors),
                           timeout=10)
            self.actors = []

    def pids(self) -> list[int]:
        """Process ids of the actors (tests kill one to check fault handling)."""
        return self._ray.get([a.pid.remote() for a in self.actors])

    def evaluate(self, thetas: torch.Tensor, episodes: int = 1, update_stats: bool = False,
                 record: bool = False, count_steps: bool = True) -> RolloutResult:
        """Run ``episodes`` episodes of each of ``thetas (B, P)`` on the pool; means over the episodes."""
        t0 = time.perf_counter()
        thetas = torch.as_tensor(thetas, dtype=torch.float32)
        if thetas.dim() == 1:
            thetas = thetas.unsqueeze(0)
        self.spec.check_thetas(thetas)
        jobs = thetas.detach().numpy()
        if not np.isfinite(jobs).all():
            raise PolicygenError("parameter vectors contain NaN or inf; refusing to roll them out")
        b = len(jobs)
        if episodes > 1:  # as the local engine: one job per episode, so the episodes spread over the streams
            jobs = np.repeat(jobs, episodes, axis=0)
        bounds = np.linspace(0, len(jobs), self.workers + 1).round().astype(int)
        chunks = [(c, bounds[c], bounds[c + 1]) for c in range(self.workers) if bounds[c + 1] > bounds[c]]
        stats = self._ray.put((self.obs_stats.count, self.obs_stats.mean, self.obs_stats.m2))
        refs = {c: self._ray.put(np.ascontiguousarray(jobs[lo:hi])) for c, lo, hi in chunks}
        out = self._gather({c: refs[c] for c, _, _ in chunks}, stats, record)
        self._calls += 1
        res = self._assemble([out[c] for c, _, _ in chunks], b, episodes, record)
        if count_steps:
            self.env_steps += res.env_steps
        if update_stats:
            self.obs_stats.merge_stats(res.obs_stats)
        wall = time.perf_counter() - t0
        walls = [out[c]["wall_s"] for c, _, _ in chunks]
        self.last_call = {"wall_s": wall, "worker_wall_s": walls, "overhead_s": wall - max(walls),
                          "worker_cpu_s": [out[c]["cpu_s"] for c, _, _ in chunks],
                          "policies": b, "jobs": len(jobs), "chunks": len(chunks)}
        return res

    def _submit(self, c: int, ref, stats, record: bool):
        seed = stream_seed(self.seed, c, self._calls)
        actor = self.actors[self._owner[c]]
        return actor.evaluate.remote(self._key, c, self._cfg, seed, self._fresh[c], ref, stats, record)

    def _gather(self, refs: dict, stats, record: bool) -> dict:
        """Each chunk's result; a chunk whose actor died is evaluated again on another actor."""
        ray = self._ray
        pending = {self._submit(c, ref, stats, record): c for c, ref in refs.items()}
        out, retries = {}, 0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            c = pending.pop(done[0])
            try:
                out[c] = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:  # the engine raised: a user-facing error, not a fault
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, PolicygenError) else PolicygenError(
                    f"a Ray worker failed evaluating policies: {str(e).strip().splitlines()[-1]}")) from None
            except (ray.exceptions.RayActorError, getattr(ray.exceptions, "ActorUnavailableError", ())):
                retries += 1
                if retries > self.max_retries:
                    raise PolicygenError(f"Ray workers died {retries} times in one call (limit {self.max_retries}"
                                         f"); is the cluster losing nodes?") from None
                self.faults += 1
                self._move(c)
                pending[self._submit(c, refs[c], stats, record)] = c
                continue
            self._fresh[c] = False
        return out

    def _move(self, c: int) -> None:
        """Stream ``c`` lost its actor: host it on the next actor (rebuilt there from the call's seed)."""
        dead = self._owner[c]
        for s in range(self.workers):
            if self._owner[s] == dead:
                self._fresh[s] = True  # every stream of the dead actor is rebuilt at its next call
        self._owner[c] = (dead + 1) % self.workers
        self._fresh[c] = True
        self._hosted.add((self._owner[c], c))

    def _assemble(self, parts: list[dict], b: int, episodes: int, record: bool) -> RolloutResult:
        """One result from the chunks' (in chunk order: the same merge whatever finished first)."""
        cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
        mean = lambda a: a.reshape(b, episodes).mean(axis=1)  # noqa: E731  (as the local engine)
        stats = RunningStats(self.info.obs_dim)
        for p in parts:
            stats.merge(*p["stats"])
        trajs = [t for p in parts for t in p["trajectories"]] if record else None
        self.batch_steps += sum(p["slot_steps"] for p in parts) / self.num_envs
        self.backend_seconds += sum(p["backend_s"] for p in parts)
        self.failures += sum(p["failures"] for p in parts)
        self.last_fault = next((p["last_fault"] for p in reversed(parts) if p["last_fault"]), self.last_fault)
        ret = cat("returns")
        # each job is one episode, so a chunk's successes are its episodes' (None: the env has no signal)
        succ = cat("successes") > 0.5 if all(p.get("successes") is not None for p in parts) else None
        return RolloutResult(mean(ret), mean(cat("train_returns")), mean(cat("lengths")),
                             int(sum(p["steps"] for p in parts)), cat("failed").reshape(b, episodes).any(axis=1),
                             trajs, ret.reshape(b, episodes), stats,
                             None if succ is None else mean(succ.astype(np.float64)),
                             None if succ is None else succ.reshape(b, episodes),
                             cat("lengths").reshape(b, episodes))
