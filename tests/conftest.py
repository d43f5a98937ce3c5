"""Stub environments with known returns and lengths, registered for every test."""

from __future__ import annotations

import os
import signal
import time
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco: the render tests draw offscreen

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


class StubEnv(gym.Env):
    """A constant action a gives reward a + healthy_reward per step and an episode of
    ``5 + round(5 * (a + 1))`` steps (5..15), so return and length are known in closed form.
    ``nan_at`` makes step number ``nan_at`` return a NaN reward."""

    def __init__(self, healthy_reward: float = 0.0, nan_at: int | None = None, obs_dim: int = 2):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.healthy_reward, self.nan_at, self.t = healthy_reward, nan_at, 0

    def _obs(self):
        o = np.zeros(self.observation_space.shape[0])
        o[0], o[-1] = self.t / 10.0, 1.0
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        a = float(np.clip(action[0], -1, 1))
        self.t += 1
        r = a + self.healthy_reward
        if self.nan_at is not None and self.t == self.nan_at:
            r = float("nan")
        return self._obs(), r, self.t >= stub_length(a), False, {}


def walk_state(tree, prefix=""):
    """(path, leaf) of every leaf of a nested state dict (lists included), e.g. ``/buffer/thetas``."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from walk_state(v, f"{prefix}/{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from walk_state(v, f"{prefix}/{i}")
    else:
        yield prefix, tree


def stub_length(a: float) -> int:
    return 5 + int(round(5 * (a + 1)))


class FaultyEnv(StubEnv):
    """The stub, misbehaving at step ``at_step`` of some episodes: ``fault`` is ``raise``, ``nan_obs``,
    ``inf_reward`` or ``hang`` (sleeps ``hang_s``). Which episodes: those whose first action is above
    ``above`` (engine tests pick the failing policies), or a share ``p`` of episodes drawn from the
    episode's seed (training tests)."""

    def __init__(self, fault: str = "raise", at_step: int = 3, above: float | None = 0.5, p: float = 0.0,
                 hang_s: float = 30.0):
        super().__init__()
        self.fault, self.at_step, self.above, self.p, self.hang_s = fault, at_step, above, p, hang_s
        self.spoil = False

    def reset(self, *, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        self.spoil = self.above is None and bool(self.np_random.random() < self.p)
        return out

    def step(self, action):
        if self.t == 0 and self.above is not None:
            self.spoil = float(action[0]) > self.above
        obs, r, term, trunc, info = super().step(action)
        if self.spoil and self.t == self.at_step:
            if self.fault == "raise":
                raise RuntimeError("simulated physics blow-up")
            if self.fault == "hang":
                time.sleep(self.hang_s)
            if self.fault == "nan_obs":
                obs = obs.copy()
                obs[0] = np.nan
            if self.fault == "inf_reward":
                r = float("inf")
        return obs, r, term, trunc, info


class ImageEnv(StubEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 1, (3, 4, 4), np.float64)


def _register():
    if "policygen-tests/Stub-v0" in gym.registry:
        return
    gym.register("policygen-tests/Stub-v0", entry_point=StubEnv, max_episode_steps=12)
    gym.register("policygen-tests/Image-v0", entry_point=ImageEnv, max_episode_steps=12)
    gym.register("policygen-tests/Faulty-v0", entry_point=FaultyEnv, max_episode_steps=12)


_register()


@pytest.fixture
def stub_id() -> str:
    return "policygen-tests/Stub-v0"


TINY_OVERRIDES = {
    "gogepo": {"hidden": "16,16", "evaluator_hidden": "32,32", "generator_hidden": "32,32", "n_probe": "20"},
    "udrlpg": {"policy_hidden": "16,16", "generator_hidden": "32,32", "update_repeats": "8"},
    "ars": {},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``tiny_run(algo)``: a finished 1,500-step InvertedPendulum-v5 run with small networks, made once."""
    from policygen.algorithms.base import RunConfig
    from policygen.algorithms.trainer import start_run

    made: dict[str, str] = {}

    def make(algo: str) -> str:
        if algo not in made:
            out = str(tmp_path_factory.mktemp("tiny") / algo)
            rc = RunConfig(env_id="InvertedPendulum-v5", steps=1500, seed=0, backend="gymnasium", num_envs=8,
                           eval_every=1500, eval_episodes=2)
            start_run(algo, rc, out, overrides=TINY_OVERRIDES[algo], quiet=True)
            made[algo] = out
        return made[algo]

    return make


@pytest.fixture
def one_torch_thread():
    """One torch thread, as training runs use: two threads on a shared 2-core machine thrash (10x slower);
    and a seeded global RNG for the networks' init, whatever tests ran before."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
    torch.set_num_threads(before)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``scripts/test.sh`` (POLICYGEN_NO_SKIPS=1) a skipped test fails: the setup installs every extra a test
    needs, so a skip there would hide a broken install. Run pytest directly to allow skips on a partial install."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("POLICYGEN_NO_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under scripts/test.sh, where nothing may skip: {reason}"


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test: the stop logic only takes over from it (a library that ran
    earlier in the same worker may have left another)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _signal_handlers_left_as_found(request):
    """A test that leaves SIGINT or SIGTERM handled differently is named (a warning) and its change undone, so
    tests of the stop logic do not depend on what ran before them in the worker."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        if signal.getsignal(sig) is not handler:
            warnings.warn(f"{request.node.nodeid} left {sig.name} handled by {signal.getsignal(sig)!r}", stacklevel=1)
            signal.signal(sig, handler)
