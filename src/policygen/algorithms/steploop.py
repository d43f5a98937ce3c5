"""The loop of the step-based baselines (SB3's TD3/SAC/DDPG/ARS, classic UDRL): learn, evaluate, log, checkpoint.

These algorithms act one environment step at a time from their own environment, so they do not fit the
ask/tell rollout engine of policygen's parameter-space methods. They share everything else with them: the
run directory (config.json, metrics.csv with the same columns, checkpoints/latest.safetensors,
summary.json with the same keys), the evaluation protocol (deterministic actions, standard Gymnasium
return, ``eval_episodes`` episodes every ``eval_every`` env steps and at the end, episode i of evaluation
number k from ``reset(seed=S_k + i)``), and ``--resume``.

A step-based run checkpoints at every evaluation. Its resume continues from the last checkpoint but is not
bit-for-bit (SB3 resets its training environment when a model is loaded); classic UDRL checkpoints at an
episode boundary and its resume is exact.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.base import Algorithm, RunConfig
from policygen.algorithms.loading import CORRUPT
from policygen.envs.make import make_gymnasium
from policygen.errors import PolicygenError
from policygen.runs.rundir import RunDir

STEP_BACKENDS = ("auto", "gymnasium")


class StepAlgorithm(Algorithm):
    """A baseline that steps its own Gymnasium environment (no thetas, no rollout engine)."""

    step_based = True
    spec = None
    normalize_obs = False
    keeps_snapshots = False
    """Whether ``snapshot`` is implemented (``train --snapshots N``)."""

    def check_run(self, rc: RunConfig) -> None:
        """Refuse run settings a step-based baseline cannot honour, before the run directory exists."""
        if rc.backend not in STEP_BACKENDS:
            raise PolicygenError(f"{self.name} steps one Gymnasium environment itself; --backend {rc.backend!r} "
                                 f"is for policygen's rollout engine (use auto or gymnasium)")
        if rc.tensorboard or (rc.snapshots and not self.keeps_snapshots):
            raise PolicygenError(f"{self.name} is a step-based baseline: "
                                 f"{'--tensorboard is' if rc.tensorboard else '--snapshots is'} not supported for it "
                                 f"(its evaluations are in metrics.csv)")

    def setup(self, rc: RunConfig, run_path: Path, state: dict | None) -> None:
        """Build the training environment and the learner; restore ``state`` (a checkpoint's ``algo``)."""
        raise NotImplementedError

    def learn(self, total_steps: int, on_step) -> None:
        """Train until ``env_steps >= total_steps``, calling ``on_step()`` after every step (or episode); stop
        early when it returns False (Ctrl-C or SIGTERM: the loop then checkpoints where it is)."""
        raise NotImplementedError

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action for one raw observation ``(obs_dim,) -> (act_dim,)`` (evaluation)."""
        raise NotImplementedError

    def begin_episode(self) -> None:
        """Called before each evaluation episode (UDRL resets its command)."""

    def observe(self, reward: float) -> None:
        """The reward of the last evaluation step (UDRL updates its command)."""

    @property
    def env_steps(self) -> int:
        raise NotImplementedError

    def train_returns(self) -> list[float]:
        """Returns of the training episodes finished in this process, oldest first."""
        raise NotImplementedError

    def row(self) -> dict:
        """Algorithm-specific metrics for the next metrics.csv row (iteration, loss, command)."""
        return {}

    def save(self, run_path: Path) -> dict:
        """Write the learner's state; returns what goes into the checkpoint's ``algo`` entry."""
        raise NotImplementedError

    def snapshot(self, run_path: Path) -> None:
        """Keep the current policy for good (``train --snapshots N``; only where ``keeps_snapshots``)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def evaluate_step_algo(algo: StepAlgorithm, env, seed: int, episodes: int) -> dict:
    """Mean and std of the standard Gymnasium return over ``episodes`` deterministic episodes."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        algo.begin_episode()
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(algo.act(np.asarray(obs, dtype=np.float64)))
            total += float(r)
            algo.observe(float(r))
            done = term or trunc
        returns.append(total)
    command = algo.row().get("eval_command")
    return {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
            "eval_command": command}


class _StepRun:
    """One run of a step-based algorithm: the callback state between SB3's (or UDRL's) steps."""

    def __init__(self, run: RunDir, algo: StepAlgorithm, rc: RunConfig, loop, bar, stop):
        from policygen.algorithms.trainer import LAST_EVALS, _reseed

        self.run, self.algo, self.rc, self.loop, self.bar, self.stop = run, algo, rc, loop, bar, stop
        self.last_evals, self.reseed = LAST_EVALS, _reseed
        self.eval_env = make_gymnasium(rc.env_id, rc.env_kwargs)
        self.t0 = time.perf_counter() - loop.wall_s
        self.episodes_seen = 0
        self.pending: list[float] = []
        """Training returns since the last row that an earlier process saw (a stop's checkpoint keeps them)."""
        self.steps_before = algo.env_steps

    def on_step(self) -> bool:
        """Snapshot and evaluate when due; False once a stop was asked for."""
        from policygen.algorithms.trainer import _snapshot_due

        steps = self.algo.env_steps
        if _snapshot_due(self.rc, self.steps_before, steps):
            self.algo.snapshot(self.run.path)
        self.steps_before = steps
        if steps >= self.loop.next_eval:
            self.log_row()
        return self.stop.signum is None

    def log_row(self) -> None:
        loop, algo = self.loop, self.algo
        rets = self._unlogged_returns()
        self.episodes_seen = len(algo.train_returns())
        self.pending = []
        extra = algo.row()
        loop.iteration = int(extra.get("iteration", loop.iteration + 1))  # the algorithm's own update count
        seed = self.reseed(self.rc.seed, algo.env_steps, stream=1)
        ev = evaluate_step_algo(algo, self.eval_env, seed, self.rc.eval_episodes)
        loop.last_eval = ev
        loop.best_eval = max(loop.best_eval, ev["eval_return"])
        loop.recent_evals = [*loop.recent_evals, ev["eval_return"]][-self.last_evals:]
        while loop.next_eval <= algo.env_steps:
            loop.next_eval += self.rc.eval_every
        row = {"env_steps": algo.env_steps, "iteration": loop.iteration, "episodes": len(rets),
               "train_return_mean": float(np.mean(rets)) if rets else None,
               "train_return_max": float(np.max(rets)) if rets else None, "failures": 0,
               **extra, **ev}
        loop.best_train = max([loop.best_train, *rets])
        row["best_train_return"] = loop.best_train if math.isfinite(loop.best_train) else None
        row["wall_s"] = loop.wall_s = time.perf_counter() - self.t0
        self.run.append_metrics(row)
        loop.metric_rows += 1
        self.bar.update(algo.env_steps, row)
        self.checkpoint()

    def _unlogged_returns(self) -> list[float]:
        """Training returns not yet in a metrics row: an earlier process's (``pending``), then this one's."""
        return self.pending + self.algo.train_returns()[self.episodes_seen:]

    def checkpoint(self) -> None:
        self.loop.wall_s = time.perf_counter() - self.t0
        state = {"algo": self.algo.save(self.run.path), "env_steps": self.algo.env_steps, "loop": asdict(self.loop),
                 "pending_returns": np.asarray(self._unlogged_returns(), dtype=np.float64)}
        self.run.save_checkpoint(state)

    def close(self) -> None:
        self.eval_env.close()


def train_steps(run: RunDir, algo: StepAlgorithm, rc: RunConfig, state: dict | None, bar) -> tuple:
    """Train ``algo`` in ``run`` from scratch or from ``state`` (a checkpoint); returns (loop, env_steps)."""
    from policygen.algorithms.trainer import _Loop, _StopRequest

    if rc.torch_threads > 0:
        torch.set_num_threads(rc.torch_threads)
    loop = _Loop(next_eval=rc.eval_every)
    if state is not None:
        try:
            loop = _Loop(**state["loop"])
            algo_state = state["algo"]
        except CORRUPT as e:
            raise PolicygenError(f"{run.path}: checkpoint's trainer state is damaged ({e})") from None
    algo.setup(rc, run.path, algo_state if state is not None else None)
    run.write_metrics(run.read_metrics()[: loop.metric_rows])  # drop rows logged after the checkpoint
    run.set_status("running")
    stop = _StopRequest()
    sr = _StepRun(run, algo, rc, loop, bar, stop)
    if state is not None:  # checkpoints from before the stop's own checkpoint have none
        sr.pending = [float(r) for r in np.asarray(state.get("pending_returns", []), dtype=np.float64).reshape(-1)]
    try:
        stop.install()
        if algo.env_steps < rc.steps:
            algo.learn(rc.steps, sr.on_step)
        if stop.signum is not None and algo.env_steps < rc.steps:
            sr.checkpoint()
            bar.close()
            stop.stop(run, f"{algo.env_steps} env steps")
        if loop.last_eval is None or loop.metric_rows == 0 or _last_row_steps(run) < algo.env_steps:
            sr.log_row()  # the final evaluation, unless the last step was one
        loop.wall_s = time.perf_counter() - sr.t0
        sr.checkpoint()
    finally:
        stop.uninstall()
        sr.close()
        algo.close()
    return loop, algo.env_steps


def _last_row_steps(run: RunDir) -> int:
    rows = run.read_metrics()
    try:
        return int(float(rows[-1]["env_steps"])) if rows else -1
    except (KeyError, ValueError):
        return -1
