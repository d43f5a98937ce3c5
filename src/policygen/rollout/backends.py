"""Vectors of environments the engine steps slot by slot: EnvPool (C++ threads) or Gymnasium (in process).

A backend owns ``num_envs`` slots. ``step(ids, actions)`` steps only the listed slots. After an episode
ends in a slot, ``reset(ids)`` starts a new one. EnvPool resets lazily (its next step of that slot
returns the first observation and ignores the action): the engine then steps the slot once more with a
dummy action and takes the returned observation as the episode's first, which saves a call per reset.

Success signal: after each ``step``, ``success`` is ``(len(ids),)`` bool (``info["success"]`` of those
slots, e.g. MetaWorld) or None when the env reports none; the engine turns it into episode success.
"""

from __future__ import annotations

import signal
import threading

import numpy as np

from policygen.envs.make import check_env_id, domain_kwargs, envpool_only, import_envpool, make_gymnasium
from policygen.errors import EnvFault, PolicygenError

BACKENDS = ("auto", "envpool", "gymnasium")
ENGINE_BACKENDS = (*BACKENDS, "ray")
"""What ``--backend`` accepts: the environment backends, and ray (the engine spread over Ray actors)."""


def envpool_has(env_id: str) -> bool:
    registry = import_envpool(env_id)
    return registry is not None and env_id in registry.list_all_envs()


def resolve_backend(name: str, env_id: str) -> str:
    if name == "ray":
        raise PolicygenError("backend 'ray' spreads the whole engine over Ray actors: build it with "
                             "policygen.rollout.make_engine (train and bench rollout take --backend ray); "
                             f"environment backends are {list(BACKENDS)}")
    if name not in BACKENDS:
        raise PolicygenError(f"backend {name!r} is not one of {list(ENGINE_BACKENDS)}")
    check_env_id(env_id)
    if (only := envpool_only(env_id)) and name == "gymnasium":
        raise PolicygenError(f"{env_id} runs only through EnvPool (no Gymnasium version); use --backend envpool "
                             f"or auto (needs {only[0]})")
    if name == "auto":
        return "envpool" if envpool_has(env_id) else "gymnasium"
    if name == "envpool" and not envpool_has(env_id):
        raise PolicygenError(f"EnvPool is not installed or has no task {env_id!r}; use --backend gymnasium "
                             f"(pip install envpool for Hopper-v5, Swimmer-v5, InvertedPendulum-v5, ...)")
    return name


class _StepTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _StepTimeout


class GymnasiumBackend:
    """A list of Gymnasium envs stepped in this process; each new episode is seeded from ``seed``.

    An env that raises, or that hangs (a step call of the listed slots lasting over ``step_timeout``
    seconds, 0: no limit; the env running then is the hung one; SIGALRM, so only in the main thread and
    only where the env's code returns to Python), does not stop the others: ``errors`` names the slot and
    what happened, its reward is NaN and its episode ends. Its next reset rebuilds the env if resetting it
    fails.
    """

    lazy_reset = False
    success: np.ndarray | None = None

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None,
                 num_threads: int | None = None, step_timeout: float = 0.0):
        self.env_id, self.env_kwargs = env_id, env_kwargs
        self.envs = [make_gymnasium(env_id, env_kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)
        for i, e in enumerate(self.envs):
            e.action_space.seed(seed + i)
        self.obs_dim = self.envs[0].observation_space.shape[0]
        self.step_timeout = step_timeout if threading.current_thread() is threading.main_thread() else 0.0
        self.errors: dict[int, str] = {}

    def reset(self, ids: np.ndarray) -> np.ndarray:
        seeds = self.rng.integers(0, 2**31 - 1, size=len(ids))
        return np.stack([self._reset_one(int(i), int(s)) for i, s in zip(ids, seeds, strict=True)])

    def _reset_one(self, i: int, seed: int) -> np.ndarray:
        try:
            return self.envs[i].reset(seed=seed)[0]
        except Exception:  # a faulted env may be left broken: build a fresh one, and give up if that fails
            self.envs[i] = make_gymnasium(self.env_id, self.env_kwargs)
            try:
                return self.envs[i].reset(seed=seed)[0]
            except Exception as e:
                raise EnvFault(f"{self.env_id} raised {type(e).__name__} on reset, also when rebuilt: {e}") from None

    def step(self, ids: np.ndarray, actions: np.ndarray):
        n = len(ids)
        obs = np.zeros((n, self.obs_dim))
        rew = np.empty(n)
        term = np.empty(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        success = np.zeros(n, dtype=bool)
        seen = False
        self.errors = {}
        timed = self.step_timeout > 0
        if timed:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.step_timeout)  # one timer for the call: the env
        try:                                                         # running when it fires is the slow one
            for k, i in enumerate(ids):
                try:
                    o, r, te, tr, info = self.envs[i].step(actions[k])
                    obs[k], rew[k], term[k], trunc[k] = o, r, te, tr
                    if "success" in info:
                        success[k], seen = bool(info["success"]), True
                except Exception as e:
                    timeout = isinstance(e, _StepTimeout)
                    self.errors[int(i)] = (f"took longer than step_timeout={self.step_timeout:g} s for one step"
                                           if timeout else f"raised {type(e).__name__} while stepping: {e}")
                    rew[k], term[k] = np.nan, True
                    if timeout:  # the other slots get a full timeout again
                        signal.setitimer(signal.ITIMER_REAL, self.step_timeout)
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        self.success = success if seen else None
        return obs, rew, term, trunc

    def close(self) -> None:
        for e in self.envs:
            e.close()


class EnvPoolBackend:
    """EnvPool's synchronous pool, stepping only the listed slots on its C++ threads."""

    lazy_reset = True
    success: np.ndarray | None = None

    errors: dict[int, str] = {}  # EnvPool's C++ tasks do not raise per env; a pool error is fatal (EnvFault)

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None,
                 num_threads: int | None = None, step_timeout: float = 0.0):
        threads = num_threads or min(num_envs, 2)
        try:
            make = import_envpool(env_id).make
            self.pool = make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                             num_threads=threads, seed=int(seed), **domain_kwargs(env_id, env_kwargs))
        except Exception as e:  # envpool raises bare RuntimeError/TypeError for bad kwargs
            raise PolicygenError(f"EnvPool cannot make {env_id!r} with {env_kwargs}: {e}") from None
        self.num_envs = num_envs
        self.first_obs = self.pool.reset()[0]
        self._direct = self._direct_layout()

    def _direct_layout(self) -> tuple[dict, np.dtype] | None:
        """Where obs, reward, done, trunc, env ids (and success) sit in the C++ pool's state list, to step
        through ``_send``/``_recv`` directly. EnvPool's Python wrapper around them (action conversion,
        multiplayer ids, a config dict rebuilt on every call, a tree unflatten of every info field) cost
        ~90 of ~415 us per call of 8 Swimmer envs. None (the public ``step``) for any other layout."""
        try:
            pool, state = self.pool, list(self.pool._state_keys)
            if (list(pool._spec._action_keys) != ["env_id", "players.env_id", "action"]
                    or pool.config.get("max_num_players", 1) != 1):
                return None
            at = {k: state.index(k) for k in ("info:env_id", "obs", "reward", "done", "trunc")}
            at["success"] = state.index("info:success") if "info:success" in state else None
            return at, np.dtype(pool._spec._action_spec[-1][0])
        except (AttributeError, ValueError, TypeError, IndexError):
            return None

    def reset(self, ids: np.ndarray) -> None:
        return None  # lazy: the next step of these slots returns their first observation

    def step(self, ids: np.ndarray, actions: np.ndarray):
        if self._direct is None:
            obs, rew, term, trunc, info = self.pool.step(actions, ids)
            got = info["env_id"]
            success = np.asarray(info["success"]) > 0 if "success" in info else None
        else:
            at, dtype = self._direct
            ids32 = np.ascontiguousarray(ids, dtype=np.int32)
            self.pool._send([ids32, ids32, np.ascontiguousarray(actions, dtype=dtype)])
            state = self.pool._recv()
            obs, rew, trunc, got = state[at["obs"]], state[at["reward"]], state[at["trunc"]], state[at["info:env_id"]]
            term = state[at["done"]] & ~trunc  # as EnvPool's gymnasium wrapper
            success = None if at["success"] is None else np.asarray(state[at["success"]]) > 0
        if np.array_equal(got, ids):  # the synchronous pool answers in the order asked
            self.success = success
            return obs, rew, term, trunc
        pos = {int(e): k for k, e in enumerate(got)}
        if sorted(pos) != sorted(int(i) for i in ids):
            raise PolicygenError("EnvPool returned other slots than were stepped")
        sel = np.array([pos[int(i)] for i in ids])
        self.success = None if success is None else success[sel]
        return obs[sel], rew[sel], term[sel], trunc[sel]

    def close(self) -> None:
        self.pool.close()


def make_backend(name: str, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None,
                 num_threads: int | None = None, step_timeout: float = 0.0):
    cls = {"envpool": EnvPoolBackend, "gymnasium": GymnasiumBackend}[resolve_backend(name, env_id)]
    return cls(env_id, num_envs, seed, env_kwargs, num_threads, step_timeout)
