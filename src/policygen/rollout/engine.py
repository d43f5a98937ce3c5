"""The rollout engine: a batch of flat parameter vectors in, their returns out.

Each environment slot runs one policy's episode; when the episode ends the slot takes the next pending
policy. All slots act through one batched forward per step (one ``baddbmm`` per layer), so B different
policies cost about as much as one policy on B environments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from policygen.envs.make import RETURN_CONVENTIONS, EnvInfo, env_info
from policygen.envs.stats import RunningStats
from policygen.errors import EnvFault, PolicygenError
from policygen.policies.flat_mlp import MLPSpec, NumpyPolicies
from policygen.rollout.backends import make_backend, resolve_backend


@dataclass
class RolloutResult:
    """Outcome of ``RolloutEngine.evaluate`` for B policies (means over k episodes each)."""

    returns: np.ndarray
    """(B,) standard Gymnasium return."""
    train_returns: np.ndarray
    """(B,) return under the engine's convention (survival bonus removed if asked)."""
    lengths: np.ndarray
    """(B,) episode length."""
    env_steps: int
    """Environment steps taken by this call."""
    failed: np.ndarray
    """(B,) True where the environment misbehaved; the policy's returns are NaN."""
    trajectories: list[dict] | None = None
    """Per episode (B * k, policy-major): ``obs (T, obs_dim)`` raw, ``actions (T, act_dim)``, ``rewards (T,)``;
    with a success signal also ``success (T,)`` (``info["success"]`` after action t, i.e. of the state t+1)."""
    episode_returns: np.ndarray | None = None
    """(B, k) standard return of every episode."""
    obs_stats: RunningStats | None = field(default=None, repr=False)
    """Statistics of the observations the policies acted on in this call."""
    successes: np.ndarray | None = None
    """(B,) share of the k episodes that succeeded (``info["success"]`` ever true); None: the env has no
    success signal."""
    episode_successes: np.ndarray | None = None
    """(B, k) bool, each episode's success; None without a success signal."""
    episode_lengths: np.ndarray | None = None
    """(B, k) length of every episode (``lengths`` is their mean)."""


def checked_env(env_id: str, spec: MLPSpec, return_convention: str, env_kwargs: dict | None) -> EnvInfo:
    """The env's info, once the return convention is known and the policy fits the env (any engine)."""
    if return_convention not in RETURN_CONVENTIONS:
        raise PolicygenError(f"return convention {return_convention!r} is not one of {list(RETURN_CONVENTIONS)}")
    info = env_info(env_id, env_kwargs)
    if spec.obs_dim != info.obs_dim or spec.act_dim != info.act_dim:
        raise PolicygenError(f"policy {spec.describe()} does not fit {env_id} (obs {info.obs_dim}, "
                             f"act {info.act_dim})")
    return info


class RolloutEngine:
    """Evaluates batches of policies of one architecture on one environment.

    ``obs_stats`` normalises observations; ``evaluate(update_stats=True)`` merges the call's observations
    into it afterwards (training), ``False`` leaves it frozen (evaluation). ``env_steps`` counts every
    step of calls with ``count_steps=True`` (the steps used for learning).
    """

    def __init__(self, env_id: str, spec: MLPSpec, num_envs: int = 64, backend: str = "auto", seed: int = 0,
                 return_convention: str = "standard", normalize_obs: bool = True,
                 env_kwargs: dict | None = None, num_threads: int | None = None, tolerate_faults: bool = False,
                 step_timeout: float = 0.0):
        self.info: EnvInfo = checked_env(env_id, spec, return_convention, env_kwargs)
        self.env_id, self.spec, self.num_envs = env_id, spec, int(num_envs)
        self.backend_name = resolve_backend(backend, env_id)
        self.env_kwargs, self.num_threads = env_kwargs, num_threads
        if not step_timeout >= 0:
            raise PolicygenError(f"step_timeout must be >= 0 seconds (0: off), got {step_timeout}")
        self.step_timeout = float(step_timeout)
        self.tolerate_faults = tolerate_faults
        """False: a misbehaving environment raises ``EnvFault``. True (training): the policy's episode is
        marked failed (``RolloutResult.failed``, return NaN, never stored) and the call goes on."""
        self.failures = 0
        """Episodes marked failed so far; ``last_fault`` says what the newest one did."""
        self.last_fault: str | None = None
        self.return_convention = return_convention
        self.normalize_obs = normalize_obs
        self.obs_stats = RunningStats(self.info.obs_dim)
        self.env_steps = 0
        self.batch_steps = 0
        """Backend step calls so far; ``env steps / (batch_steps * num_envs)`` is the slots' utilisation."""
        self.backend_seconds = 0.0
        """Wall time inside the backend's step calls (the rest of a call is the engine's own work)."""
        self._backend = None
        self.reseed(seed)
        self._slot_rows = np.zeros((self.num_envs, spec.num_params), dtype=np.float32)
        self._policies = NumpyPolicies(spec, self._slot_rows)

    def reseed(self, seed: int) -> None:
        """Start every slot afresh from ``seed`` (resume points call this so a resumed run matches)."""
        if self._backend is not None:
            self._backend.close()
        self._backend = make_backend(self.backend_name, self.env_id, self.num_envs, seed, self.env_kwargs,
                                     self.num_threads, self.step_timeout)
        first = getattr(self._backend, "first_obs", None)
        self._slot_obs: list[np.ndarray | None] = [None if first is None else first[i]
                                                   for i in range(self.num_envs)]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _act(self, obs: np.ndarray, n_rows: int) -> np.ndarray:
        """Actions of the policies in weight rows ``0..n_rows-1`` on ``obs (n_rows, obs_dim)``."""
        if self.normalize_obs:
            obs = (obs - self._norm[0]) / self._norm[1]  # float64, as the statistics
        return self._policies(obs.astype(np.float32), n_rows)

    def evaluate(self, thetas: torch.Tensor, episodes: int = 1, update_stats: bool = False,
                 record: bool = False, count_steps: bool = True) -> RolloutResult:
        """Run ``episodes`` episodes of each of ``thetas (B, P)``; returns means over the episodes."""
        thetas = torch.as_tensor(thetas, dtype=torch.float32)
        if thetas.dim() == 1:
            thetas = thetas.unsqueeze(0)
        self.spec.check_thetas(thetas)
        jobs = thetas.detach().numpy()  # numpy from here: torch's small ops cost more than the work here
        if not np.isfinite(jobs).all():
            raise PolicygenError("parameter vectors contain NaN or inf; refusing to roll them out")
        if episodes > 1:
            jobs = np.repeat(jobs, episodes, axis=0)
        ret, length, failed, trajs, stats, succ = self._run(jobs, record)
        b = len(thetas)
        train = ret - (self.info.survival_bonus * length
                       if self.return_convention == "no_survival_bonus" else 0.0)
        steps = int(length.sum())
        if count_steps:
            self.env_steps += steps
        if update_stats:
            self.obs_stats.merge_stats(stats)
        mean = lambda a: a.reshape(b, episodes).mean(axis=1)  # noqa: E731
        return RolloutResult(mean(ret), mean(train), mean(length), steps,
                             failed.reshape(b, episodes).any(axis=1), trajs, ret.reshape(b, episodes), stats,
                             None if succ is None else mean(succ.astype(np.float64)),
                             None if succ is None else succ.reshape(b, episodes), length.reshape(b, episodes))

    def _run(self, jobs: np.ndarray, record: bool):
        n_jobs, slots = len(jobs), min(self.num_envs, len(jobs))
        ret = np.zeros(n_jobs)
        length = np.zeros(n_jobs, dtype=np.int64)
        failed = np.zeros(n_jobs, dtype=bool)
        trajs = [dict(obs=[], actions=[], rewards=[], success=[]) for _ in range(n_jobs)] if record else None
        succ, signalled = np.zeros(n_jobs, dtype=bool), False
        stats = _ObsAccumulator(self.info.obs_dim)
        self._norm = (self.obs_stats.mean.copy(), self.obs_stats.std.copy())  # frozen for this call
        sched = _Slots(slots, jobs, self._slot_rows)
        obs = np.zeros((slots, self.info.obs_dim))
        backend = self._backend
        need_reset = [s for s in range(slots) if self._slot_obs[s] is None]
        if need_reset and not backend.lazy_reset:
            first = backend.reset(np.array(need_reset))
            for k, s in enumerate(need_reset):
                self._slot_obs[s] = first[k]
        warming = np.array([self._slot_obs[s] is None for s in range(slots)])  # lazy resets pending

        def start(s: int) -> None:
            if sched.start(s):
                obs[s] = self._slot_obs[s]
                self._slot_obs[s] = None

        for s in range(slots):
            if not warming[s]:
                start(s)
        while sched.n_rows or (warming.any() and sched.pending):
            active = sched.slot_at[:sched.n_rows].copy()  # env slots in weight-row order
            n = len(active)
            # warming slots are stepped only while jobs wait for them; otherwise the next call warms them
            wait = np.flatnonzero(warming) if sched.pending else ()
            if n:
                seen = obs[active]  # a copy: the accumulator keeps it
                stats.add(seen, copy=False)
                actions = self._act(seen, n)
                if record:
                    for k, s in enumerate(active):
                        trajs[sched.job_of[s]]["obs"].append(seen[k])
                        trajs[sched.job_of[s]]["actions"].append(actions[k].copy())
            else:
                actions = np.zeros((0, self.info.act_dim), dtype=np.float32)
            if len(wait):
                ids = np.concatenate([active, wait])
                actions = np.concatenate([actions, np.zeros((len(wait), self.info.act_dim), np.float32)])
            else:
                ids = active
            o, r, term, trunc = self._step(backend, ids, actions)
            if n:
                ra, oa = r[:n], o[:n]
                j = sched.job_of[active]
                errors = getattr(backend, "errors", None)  # slot -> what the env raised or how it hung
                if np.isfinite(ra).all() and np.isfinite(oa).all() and not errors:
                    bad, done = None, term[:n] | trunc[:n]
                else:
                    bad = ~(np.isfinite(ra) & np.isfinite(oa).all(axis=1))
                    if errors:
                        bad |= np.isin(active, list(errors))
                    for k in np.flatnonzero(bad):
                        self._fault(int(j[k]), ra[k], oa[k], (errors or {}).get(int(active[k])))
                    failed[j[bad]] = True
                    done = term[:n] | trunc[:n] | bad
                ret[j] += ra
                length[j] += 1
                flags = getattr(backend, "success", None)  # info["success"] of the stepped slots, if any
                if flags is not None:
                    signalled = True
                    succ[j] |= flags[:n]
                if record:
                    for k, (jj, rr) in enumerate(zip(j, ra, strict=True)):
                        trajs[jj]["rewards"].append(rr)
                        if flags is not None:
                            trajs[jj]["success"].append(flags[k])
                obs[active] = oa
                for k in np.flatnonzero(done):
                    s = active[k]
                    if backend.lazy_reset:
                        warming[s] = True
                        sched.stop(s)
                    else:
                        self._slot_obs[s] = backend.reset(np.array([s]))[0]
                        start(s)
            for k, s in enumerate(wait):
                warming[s] = False
                self._slot_obs[s] = o[n + k]
                start(s)
        ret[failed] = np.nan
        if record:
            trajs = [{k: np.asarray(v, dtype=bool if k == "success" else np.float32) for k, v in t.items()
                      if k != "success" or signalled} for t in trajs]
        return ret, length, failed, trajs, stats.result(), succ if signalled else None

    def _step(self, backend, ids, actions):
        self.batch_steps += 1
        t0 = time.perf_counter()
        try:
            return backend.step(ids, actions)
        except PolicygenError:
            raise
        except Exception as e:
            raise EnvFault(f"{self.env_id} raised {type(e).__name__} while stepping: {e}") from None
        finally:
            self.backend_seconds += time.perf_counter() - t0

    def _fault(self, job: int, reward: float, obs: np.ndarray, error: str | None) -> None:
        """Record (tolerant engine) or raise the fault of policy ``job``'s episode."""
        what = error or (f"returned a non-finite reward ({reward}) or observation "
                         f"({obs[~np.isfinite(obs)][:3]}...)")
        msg = f"{self.env_id} {what} for policy {job}; environments must return finite rewards and observations"
        if not self.tolerate_faults:
            raise EnvFault(msg)
        self.failures += 1
        self.last_fault = msg


class _Slots:
    """Which job each env slot runs, and the weight rows they use.

    Weights of running jobs are kept compact in rows ``0..n_rows-1`` of ``rows (N, P)`` (a finished job's
    row is refilled by the last row), so the forward runs on a contiguous prefix, no gather, and a tail
    of a few long episodes costs a few policies' matmuls, not N. numpy: a torch ``copy_`` of one row
    cost ~0.5 ms on this machine.
    """

    def __init__(self, slots: int, jobs: np.ndarray, rows: np.ndarray):
        self.jobs, self.rows = jobs, rows
        self.next_job, self.n_rows = 0, 0
        self.job_of = np.full(slots, -1)
        self.row_of = np.full(slots, -1)
        self.slot_at = np.full(slots, -1)

    @property
    def pending(self) -> bool:
        return self.next_job < len(self.jobs)

    def start(self, s: int) -> bool:
        """Give slot ``s`` the next job; False (and the slot stops) when none is left."""
        if not self.pending:
            self.stop(s)
            return False
        if self.row_of[s] < 0:
            self.row_of[s], self.slot_at[self.n_rows] = self.n_rows, s
            self.n_rows += 1
        self.rows[self.row_of[s]] = self.jobs[self.next_job]
        self.job_of[s] = self.next_job
        self.next_job += 1
        return True

    def stop(self, s: int) -> None:
        r, last = self.row_of[s], self.n_rows - 1
        self.job_of[s] = -1
        if r < 0:
            return
        if r != last:
            moved = self.slot_at[last]
            self.rows[r] = self.rows[last]
            self.row_of[moved], self.slot_at[r] = r, moved
        self.row_of[s], self.slot_at[last] = -1, -1
        self.n_rows -= 1


class _ObsAccumulator:
    """Observations of one call, merged into exact statistics in chunks (one numpy pass per chunk)."""

    def __init__(self, dim: int, chunk_floats: int = 1 << 20):
        self.stats, self.parts, self.size, self.limit = RunningStats(dim), [], 0, chunk_floats

    def add(self, obs: np.ndarray, copy: bool = True) -> None:
        self.parts.append(obs.copy() if copy else obs)
        self.size += obs.size
        if self.size >= self.limit:
            self._flush()

    def _flush(self) -> None:
        if self.parts:
            self.stats.update(np.concatenate(self.parts))
            self.parts, self.size = [], 0

    def result(self) -> RunningStats:
        self._flush()
        return self.stats
