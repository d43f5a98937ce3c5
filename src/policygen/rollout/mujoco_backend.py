"""Gymnasium's MuJoCo tasks stepped by ``mujoco.batch`` on C++ threads: the ``mujoco`` backend.

Each slot is one simulation of the task's own model (Gymnasium's XML, ``frame_skip``, ``--env-kwargs``).
A step loads every listed slot's whole integration state (warm start included) into an MjData on
``num_threads`` threads and runs ``mj_step`` ``frame_skip`` times, as Gymnasium's ``do_simulation`` does;
observations, rewards and terminations are Gymnasium's formulas over the slots at once. New episodes
are Gymnasium's own ``reset(seed=...)`` of one env, copied into the slot. So the numbers are Gymnasium's,
bit for bit (tests/test_mujoco_backend.py), and the physics runs without Python per env step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policygen.envs.make import make_gymnasium
from policygen.errors import PolicygenError

# the task's Gymnasium class -> (qpos columns dropped from the observation when the env excludes current
# positions, velocities clipped to +-10, healthy checks: "hopper", "walker" or None)
_LOCOMOTION = {
    "SwimmerEnv": (2, False, None),
    "HalfCheetahEnv": (1, False, None),
    "HopperEnv": (1, True, "hopper"),
    "Walker2dEnv": (1, True, "walker"),
}
SUPPORTED = ("Swimmer-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "InvertedPendulum-v5")
"""The tasks this backend reproduces (their v5 classes, any ``--env-kwargs`` of theirs)."""


def check_task(env_id: str) -> None:
    if env_id not in SUPPORTED:
        raise PolicygenError(f"backend 'mujoco' reproduces {', '.join(SUPPORTED)}, not {env_id!r}; use "
                             f"--backend gymnasium or envpool")


@dataclass
class _Task:
    """Gymnasium's step formulas for one task, read from a made env so its constructor options apply."""

    kind: str  # "locomotion" or "pendulum"
    drop: int = 0
    clip_vel: bool = False
    healthy: str | None = None
    forward_weight: float = 1.0
    ctrl_weight: float = 0.0
    healthy_reward: float = 0.0
    terminate_unhealthy: bool = False
    z_range: tuple = (-np.inf, np.inf)
    angle_range: tuple = (-np.inf, np.inf)
    state_range: tuple = (-np.inf, np.inf)

    @classmethod
    def of(cls, env) -> _Task:
        name = type(env).__name__
        if name == "InvertedPendulumEnv":
            return cls("pendulum")
        drop, clip_vel, healthy = _LOCOMOTION[name]
        task = cls("locomotion", drop if env._exclude_current_positions_from_observation else 0, clip_vel,
                   healthy, env._forward_reward_weight, env._ctrl_cost_weight)
        if healthy:
            task.healthy_reward, task.terminate_unhealthy = env._healthy_reward, env._terminate_when_unhealthy
            task.z_range, task.angle_range = env._healthy_z_range, env._healthy_angle_range
            if healthy == "hopper":
                task.state_range = env._healthy_state_range
        return task


class MujocoBatchBackend:
    """``num_envs`` simulations of a Gymnasium MuJoCo task in one ``mujoco.batch.Batch``.

    Same slots, seeds and numbers as ``GymnasiumBackend`` (each new episode is seeded from ``seed`` in
    slot order), stepped in C++ on ``num_threads`` threads (default: as EnvPool, up to 2). A simulation
    that MuJoCo refuses to step ends its episode with reward NaN and its slot in ``errors``. ``step_timeout``
    is accepted for the common signature and unused: the steps run in MuJoCo's C code, which does not hang.
    """

    lazy_reset = False
    success = None

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None,
                 num_threads: int | None = None, step_timeout: float = 0.0):
        check_task(env_id)
        try:
            import mujoco
            from mujoco.batch import Batch, SimulationError
        except ImportError:
            raise PolicygenError("backend 'mujoco' needs mujoco >= 4.0 (mujoco.batch); scripts/setup.sh "
                                 "installs it") from None
        self.env_id, self.num_envs = env_id, num_envs
        self._reset_env = make_gymnasium(env_id, env_kwargs)  # Gymnasium's reset, copied into slots
        env = self._reset_env.unwrapped
        if type(env).__name__ not in (*_LOCOMOTION, "InvertedPendulumEnv"):
            raise PolicygenError(f"{env_id} is registered to {type(env).__name__}, which backend 'mujoco' does "
                                 f"not reproduce; use --backend gymnasium")
        self.task = _Task.of(env)
        self._mujoco, self._model, self.frame_skip, self.dt = mujoco, env.model, env.frame_skip, env.dt
        self._simulation_error = SimulationError
        self.max_steps = self._reset_env.spec.max_episode_steps if self._reset_env.spec else None
        threads = max(1, min(num_threads or 2, num_envs))
        self.batch = Batch(env.model, nsim=num_envs, nthread=threads)
        self._qpos, self._qvel, self._ctrl = (self.batch.bind(f) for f in ("qpos", "qvel", "ctrl"))
        self._row = np.empty(self.batch.nstate)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self.obs_dim = env.observation_space.shape[0]
        self.rng = np.random.default_rng(seed)
        self.errors: dict[int, str] = {}

    def reset(self, ids: np.ndarray) -> np.ndarray:
        return self.reset_seeded(ids, self.rng.integers(0, 2**31 - 1, size=len(ids)))

    def reset_seeded(self, ids: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        obs = np.empty((len(ids), self.obs_dim))
        spec = self._mujoco.mjtState.mjSTATE_INTEGRATION
        for k, (i, s) in enumerate(zip(ids, seeds, strict=True)):
            obs[k] = self._reset_env.reset(seed=int(s))[0]
            self._mujoco.mj_getState(self._model, self._reset_env.unwrapped.data, self._row, spec)
            self.batch.state[i] = self._row
            self._elapsed[i] = 0
        return obs

    def step(self, ids: np.ndarray, actions: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        task, qpos = self.task, self._qpos
        self._ctrl[ids] = actions
        x_before = qpos[ids, 0]
        self.errors = {}
        try:
            self.batch.step(np.sort(ids), nstep=self.frame_skip)  # the engine lists slots in row order
            failed = None
        except self._simulation_error as e:  # those slots kept their state; their episodes end here
            failed = np.isin(ids, e.ids)
            self.errors = {int(i): f"MuJoCo refused to step it: {self.batch.error(int(i))}" for i in e.ids}
        qp, qv = qpos[ids], self._qvel[ids]
        if task.kind == "pendulum":
            obs = np.concatenate((qp, qv), axis=1)
            term = ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)
            rew = (~term).astype(np.float64)
        else:
            # Gymnasium's order of operations, and its float32 control cost for float32 actions
            x_velocity = (qp[:, 0] - x_before) / self.dt
            ctrl_cost = task.ctrl_weight * np.sum(np.square(actions), axis=1)
            rew = task.forward_weight * x_velocity
            vel = np.clip(qv, -10, 10) if task.clip_vel else qv
            obs = np.concatenate((qp[:, task.drop:], vel), axis=1)
            if task.healthy:
                z, angle = qp[:, 1], qp[:, 2]
                healthy = ((task.z_range[0] < z) & (z < task.z_range[1])
                           & (task.angle_range[0] < angle) & (angle < task.angle_range[1]))
                if task.healthy == "hopper":
                    state = np.concatenate((qp[:, 2:], qv), axis=1)
                    healthy &= ((task.state_range[0] < state) & (state < task.state_range[1])).all(axis=1)
                rew = rew + healthy * task.healthy_reward
                term = ~healthy & task.terminate_unhealthy
            else:
                term = np.zeros(len(ids), dtype=bool)
            rew = rew - ctrl_cost
        if failed is not None:
            rew[failed], term[failed] = np.nan, True
        self._elapsed[ids] += 1
        trunc = (self._elapsed[ids] >= self.max_steps) if self.max_steps else np.zeros(len(ids), dtype=bool)
        return obs, rew, term, trunc

    def close(self) -> None:
        if getattr(self, "_reset_env", None) is not None:
            self._reset_env.close()
            self._reset_env = None
        self.batch = None
