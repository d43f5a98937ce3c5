"""Vectors of environments the engine steps slot by slot: EnvPool (C++ threads), Gymnasium (in process, or over
processes) or ``mujoco`` (Gymnasium's MuJoCo tasks on mujoco.batch's C++ threads: rollout/mujoco_backend.py).

A backend owns ``num_envs`` slots. ``step(ids, actions)`` steps only the listed slots. After an episode
ends in a slot, ``reset(ids)`` starts a new one. EnvPool resets lazily (its next step of that slot
returns the first observation and ignores the action): the engine then steps the slot once more with a
dummy action and takes the returned observation as the episode's first, which saves a call per reset.

Success signal: after each ``step``, ``success`` is ``(len(ids),)`` bool (``info["success"]`` of those
slots, e.g. MetaWorld) or None when the env reports none; the engine turns it into episode success.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

import gymnasium as gym
import numpy as np

from policygen.envs.make import check_env_id, domain_kwargs, envpool_only, import_envpool, make_gymnasium
from policygen.errors import EnvFault, PolicygenError

BACKENDS = ("auto", "envpool", "gymnasium", "mujoco")
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
    if name == "auto":  # the mujoco backend's numbers are the gymnasium backend's, at about EnvPool's speed
        return "envpool" if envpool_has(env_id) else "mujoco" if mujoco_batch_has(env_id) else "gymnasium"
    if name == "mujoco":
        from policygen.rollout.mujoco_backend import check_task
        check_task(env_id)
    if name == "envpool" and not envpool_has(env_id):
        raise PolicygenError(f"EnvPool is not installed or has no task {env_id!r}; use --backend gymnasium "
                             f"(pip install envpool for Hopper-v5, Swimmer-v5, InvertedPendulum-v5, ...)")
    return name


def mujoco_batch_has(env_id: str) -> bool:
    """Whether backend 'mujoco' reproduces ``env_id`` here (one of its tasks, and mujoco with ``mujoco.batch``)."""
    from policygen.rollout.mujoco_backend import SUPPORTED
    if env_id not in SUPPORTED:
        return False
    try:
        import mujoco.batch  # noqa: F401
    except ImportError:
        return False
    return True


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
        return self.reset_seeded(ids, self.rng.integers(0, 2**31 - 1, size=len(ids)))

    def reset_seeded(self, ids: np.ndarray, seeds: np.ndarray) -> np.ndarray:
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
                             num_threads=threads, seed=int(seed), thread_affinity_offset=pinned_offset(threads),
                             **domain_kwargs(env_id, env_kwargs))
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


class ProcessGymnasiumBackend:
    """Gymnasium envs spread over ``procs`` processes: this one and ``procs - 1`` workers
    (``python -m policygen.rollout.env_worker``), slot ``i`` in process ``i % procs``.

    MuJoCo's Python bindings hold the GIL while they step, so threads would take turns; processes step in
    parallel. Each call sends the workers their slots' actions as raw bytes, steps this process's slots
    meanwhile, then collects the answers (``spin_poll``). 1.2-1.8x the env steps/s of one process on 2 cores
    (16-32 slots of Hopper, Swimmer, Pusher: bench/rollout_procs.sh). Reset seeds are drawn here in slot order, as
    ``GymnasiumBackend`` draws them, so results do not depend on ``procs``. Workers ignore SIGINT/SIGTERM
    (the run's own stop finishes its iteration with them) and exit when the pipe closes, also when this
    process is killed. A worker that dies or answers with an error raises ``EnvFault``.
    """

    lazy_reset = False
    success: np.ndarray | None = None

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None, procs: int = 2,
                 step_timeout: float = 0.0):
        self.env_id, self.num_envs, self.procs = env_id, num_envs, procs
        self.rng = np.random.default_rng(seed)
        self.errors: dict[int, str] = {}
        sizes = [len(range(p, num_envs, procs)) for p in range(procs)]
        self._workers: list[_Worker] = []
        try:
            self._workers = [_Worker(env_id, sizes[p], seed + p, env_kwargs, step_timeout) for p in range(1, procs)]
            self._local = GymnasiumBackend(env_id, sizes[0], seed, env_kwargs, None, step_timeout)
            self.obs_dim = self._local.obs_dim
            for w in self._workers:
                w.wait_ready(self.obs_dim)
        except BaseException:
            self.close()
            raise

    def _split(self, ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(process, positions in ``ids``) for each process with slots in ``ids``, this process (0) first:
        callers send the workers theirs, then step their own while the workers step."""
        owner = ids % self.procs
        parts = [(p, np.flatnonzero(owner == p)) for p in range(self.procs)]
        return [(p, at) for p, at in parts if len(at)]

    def reset(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        seeds = self.rng.integers(0, 2**31 - 1, size=len(ids))
        obs = np.zeros((len(ids), self.obs_dim))
        parts = self._split(ids)
        for p, at in parts:
            if p:
                self._workers[p - 1].send(b"r", ids[at] // self.procs, seeds[at])
        for p, at in parts:
            obs[at] = (self._workers[p - 1].answer() if p
                       else self._local.reset_seeded(ids[at] // self.procs, seeds[at]))
        return obs

    def step(self, ids: np.ndarray, actions: np.ndarray):
        ids = np.asarray(ids)
        n = len(ids)
        obs, rew = np.zeros((n, self.obs_dim)), np.empty(n)
        term, trunc, success = np.empty(n, dtype=bool), np.empty(n, dtype=bool), np.zeros(n, dtype=bool)
        seen, self.errors = False, {}
        parts = self._split(ids)
        for p, at in parts:
            if p:
                self._workers[p - 1].send(b"s", ids[at] // self.procs, actions[at])
        for p, at in parts:
            if p:
                o, r, te, tr, su, errors = self._workers[p - 1].answer()
            else:
                o, r, te, tr = self._local.step(ids[at] // self.procs, actions[at])
                su, errors = self._local.success, self._local.errors
            obs[at], rew[at], term[at], trunc[at] = o, r, te, tr
            if su is not None:
                success[at], seen = su, True
            self.errors.update({int(i) * self.procs + p: msg for i, msg in errors.items()})
        self.success = success if seen else None
        return obs, rew, term, trunc

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers = []
        if getattr(self, "_local", None) is not None:
            self._local.close()
            self._local = None


class _Worker:
    """One worker process of ``ProcessGymnasiumBackend`` and the two pipes to it."""

    def __init__(self, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None, step_timeout: float):
        self.env_id = env_id
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "policygen.rollout.env_worker",
                                          str(to_child), str(from_child)], pass_fds=(to_child, from_child),
                                         stdin=subprocess.DEVNULL)
        finally:
            os.close(to_child)
            os.close(from_child)
        self.out = Connection(from_parent, readable=False)
        self.inp = Connection(to_parent, writable=False)
        self.out.send((env_id, num_envs, seed, env_kwargs, step_timeout, sys.path, _registration(env_id)))
        self.timeout = None if step_timeout <= 0 else step_timeout * max(num_envs, 1) + 30.0

    def wait_ready(self, obs_dim: int) -> None:
        """Wait for the worker's envs (it answers b"k", or an error); ``obs_dim``: this env's."""
        self.pending, self.obs_dim = (b"r", 0), obs_dim
        self.answer()

    def send(self, op: bytes, ids: np.ndarray, arg: np.ndarray) -> None:
        """``op`` b"s": step slots ``ids`` with actions ``arg``; b"r": reset them with seeds ``arg``."""
        self.pending = (op, len(ids))
        try:
            self.out.send_bytes(b"".join((op, ids.astype(np.int64).tobytes(),
                                          arg.astype(np.float32 if op == b"s" else np.int64).tobytes())))
        except OSError:
            self._ended()

    def answer(self):
        """The pending request's answer: reset, the observations; step, (obs, rew, term, trunc, success,
        errors)."""
        try:
            if not spin_poll(self.inp) and self.timeout is not None and not self.inp.poll(self.timeout):
                self.proc.kill()
                raise EnvFault(f"{self.env_id}: an env worker process (pid {self.proc.pid}) did not answer within "
                               f"{self.timeout:g} s (step_timeout stops only envs that return to Python)")
            buf = self.inp.recv_bytes()
        except (EOFError, OSError):
            self._ended()
        if buf[:1] == b"e":
            raise EnvFault(f"{self.env_id}: {buf[1:].decode()}")
        op, n = self.pending
        return None if buf == b"k" else decode_answer(buf, n, self.obs_dim, op == b"s")

    def _ended(self):
        code = self.proc.wait(timeout=5)
        raise EnvFault(f"{self.env_id}: an env worker process (pid {self.proc.pid}) ended with exit code "
                       f"{code} (killed, or out of memory?)") from None

    def close(self) -> None:
        for c in (self.out, self.inp):
            c.close()  # the worker sees the pipe close and exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def encode_answer(obs: np.ndarray, rew=None, term=None, trunc=None, success=None, errors=None) -> bytes:
    """A worker's answer in one message: b"o" and the observations (reset), then, for a step, rewards,
    terminated, truncated, b"1" and success (or b"0") and the errors (a pickle, empty when none): raw
    arrays cost ~2 us where pickling them cost ~40 us a round trip."""
    parts = [b"o", np.asarray(obs, dtype=np.float64).tobytes()]
    if rew is not None:
        parts += [np.asarray(rew, dtype=np.float64).tobytes(), np.asarray(term, dtype=bool).tobytes(),
                  np.asarray(trunc, dtype=bool).tobytes(),
                  b"0" if success is None else b"1" + np.asarray(success, dtype=bool).tobytes(),
                  pickle.dumps(errors) if errors else b""]
    return b"".join(parts)


def decode_answer(buf: bytes, n: int, obs_dim: int, step: bool):
    """``encode_answer``'s message back: the observations, or (obs, rew, term, trunc, success, errors)."""
    view = memoryview(buf)
    end = 1 + 8 * n * obs_dim
    obs = np.frombuffer(view[1:end], dtype=np.float64).reshape(n, obs_dim)
    if not step:
        return obs
    rew = np.frombuffer(view[end:end + 8 * n], dtype=np.float64)
    term = np.frombuffer(view[end + 8 * n:end + 9 * n], dtype=bool)
    trunc = np.frombuffer(view[end + 9 * n:end + 10 * n], dtype=bool)
    at = end + 10 * n
    success = None
    if view[at:at + 1] == b"1":
        success, at = np.frombuffer(view[at + 1:at + 1 + n], dtype=bool), at + n
    rest = view[at + 1:]
    errors = pickle.loads(rest) if len(rest) else {}  # from the worker this process started
    return obs, rew, term, trunc, success, errors


def spin_poll(conn: Connection, seconds: float = 0.0005) -> bool:
    """Whether ``conn`` has a message within ``seconds``, polling (yielding the core to any other runnable
    process) before the caller blocks: a process blocked on a pipe takes tens of us to wake on this kind of VM.
    Measured (2 processes, quiet Intel Xeon): 8 Swimmer slots 260-280 us a call against 345-376 us blocking
    at once; 16 Hopper slots 11.0-11.8k steps/s against 10.6-10.9k. Two runs sharing the 2 cores do worse
    with processes than in one each (bench/share_cores.py: 6.5-6.6k against 8.2k steps/s each; spinning without
    yielding was worse still), so such runs keep ``--env-threads 1``."""
    end = time.perf_counter() + seconds
    while not conn.poll(0):
        if time.perf_counter() > end:
            return False
        os.sched_yield()  # a process with work on this core (another run) goes first
    return True


def _registration(env_id: str):
    """This process's registry entry for ``env_id``, if it pickles (a class at module level does, by
    reference), so a worker can make envs registered here at run time (tests, a user's script)."""
    try:
        return pickle.dumps(gym.spec(env_id))  # bytes: the worker loads it once it has this sys.path
    except Exception:
        return None


def pinned_offset(threads: int) -> int:
    """EnvPool's ``thread_affinity_offset``: pin its thread i to core ``offset + i`` when its threads take
    every core this process may use (a run alone on the machine; runs that share the cores are given fewer
    threads, and pinning those would stack them on the same cores), else -1 (not pinned). Pinned, a call of
    8 Swimmer slots took 245-251 us against 267-307 us, ARS on Swimmer 500k steps trained in 17.6-18.0 s against
    19.7-20.2 s (bench/commit_ab.sh), the engine stepped Hopper 10% faster, and GoGePo on Hopper (200k steps;
    updates are most of its time) took 163.5-164.8 s against 165.2-173.2 s, the same numbers (2026-12-07, Intel
    Xeon 2 cores, quiet)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return -1
    return cores[0] if cores == list(range(cores[0], cores[0] + threads)) else -1


def make_backend(name: str, env_id: str, num_envs: int, seed: int, env_kwargs: dict | None = None,
                 num_threads: int | None = None, step_timeout: float = 0.0):
    """``num_threads``: EnvPool's or mujoco.batch's C++ threads; for Gymnasium, processes (default 1: this one)."""
    name = resolve_backend(name, env_id)
    if name == "mujoco":
        from policygen.rollout.mujoco_backend import MujocoBatchBackend
        return MujocoBatchBackend(env_id, num_envs, seed, env_kwargs, num_threads, step_timeout)
    if name == "gymnasium" and min(num_threads or 1, num_envs) > 1:
        return ProcessGymnasiumBackend(env_id, num_envs, seed, env_kwargs, min(num_threads, num_envs), step_timeout)
    cls = {"envpool": EnvPoolBackend, "gymnasium": GymnasiumBackend}[name]
    return cls(env_id, num_envs, seed, env_kwargs, num_threads, step_timeout)
