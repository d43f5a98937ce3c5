"""Backend 'mujoco' (mujoco.batch) gives the Gymnasium backend's numbers, bit for bit."""

import numpy as np
import pytest
import torch

from policygen.envs.make import env_info
from policygen.errors import EnvFault, PolicygenError
from policygen.policies.flat_mlp import MLPSpec, init_thetas
from policygen.rollout import backends
from policygen.rollout.engine import RolloutEngine
from policygen.rollout.mujoco_backend import SUPPORTED


def _both(env_id, env_kwargs=None, threads=(None,), policies=12, scale=3.0, episodes=1):
    info = env_info(env_id, env_kwargs)
    spec = MLPSpec(info.obs_dim, info.act_dim, (16, 16), action_high=info.action_high)
    thetas = init_thetas(spec, policies, torch.Generator().manual_seed(0)) * scale  # varied episode lengths
    out = []
    for backend, n in [("gymnasium", None)] + [("mujoco", t) for t in threads]:
        eng = RolloutEngine(env_id, spec, num_envs=5, backend=backend, seed=7, env_kwargs=env_kwargs, num_threads=n)
        first = eng.evaluate(thetas, episodes=episodes, update_stats=True, record=True)
        second = eng.evaluate(thetas[:3], episodes=episodes)  # normalised by the merged statistics
        out.append((first, second, eng.obs_stats.mean.copy()))
        eng.close()
    return out


def _assert_same(ref, other):
    (a, a2, ma), (b, b2, mb) = ref, other
    for x, y in ((a.returns, b.returns), (a.lengths, b.lengths), (a.train_returns, b.train_returns),
                 (a2.returns, b2.returns), (ma, mb)):
        np.testing.assert_array_equal(x, y)
    for ta, tb in zip(a.trajectories, b.trajectories, strict=True):
        for key in ("obs", "actions", "rewards"):
            np.testing.assert_array_equal(ta[key], tb[key])


@pytest.mark.parametrize("env_id", SUPPORTED)
def test_mujoco_backend_gives_the_gymnasium_numbers_bit_for_bit(env_id):
    """Episodes end by termination and by the time limit (100 steps here), at different steps per slot."""
    ref, mine = _both(env_id, {"max_episode_steps": 100})
    _assert_same(ref, mine)
    lengths = ref[0].lengths
    assert lengths.max() == 100 if env_id in ("Swimmer-v5", "HalfCheetah-v5") else len(set(lengths)) > 3


@pytest.mark.parametrize("env_id,kwargs", [
    ("Hopper-v5", {"terminate_when_unhealthy": False, "ctrl_cost_weight": 0.1, "healthy_reward": 2.0,
                   "exclude_current_positions_from_observation": False, "max_episode_steps": 60}),
    ("Walker2d-v5", {"healthy_z_range": [0.9, 2.0], "forward_reward_weight": 3.0}),
    ("Swimmer-v5", {"exclude_current_positions_from_observation": False, "forward_reward_weight": 2.0,
                    "max_episode_steps": 50}),
])
def test_the_envs_own_options_apply_and_threads_change_nothing(env_id, kwargs):
    ref, one, two = _both(env_id, kwargs, threads=(1, 2), policies=6, episodes=2)
    _assert_same(ref, one)
    _assert_same(ref, two)


def test_unsupported_tasks_are_refused_with_the_list(stub_id):
    spec = MLPSpec(2, 1, (4,))
    with pytest.raises(PolicygenError, match="reproduces Swimmer-v5, .*not 'Pusher-v5'"):
        RolloutEngine("Pusher-v5", MLPSpec(23, 7, (4,)), backend="mujoco")
    with pytest.raises(PolicygenError, match="backend 'mujoco' reproduces"):
        RolloutEngine(stub_id, spec, backend="mujoco")


def test_auto_takes_mujoco_when_envpool_lacks_the_task(monkeypatch, stub_id):
    monkeypatch.setattr(backends, "envpool_has", lambda env_id: False)
    assert backends.resolve_backend("auto", "Hopper-v5") == "mujoco"
    assert backends.resolve_backend("auto", stub_id) == "gymnasium"


def test_a_simulation_mujoco_refuses_ends_only_its_episode(monkeypatch):
    from mujoco.batch import SimulationError

    info = env_info("Hopper-v5")
    spec = MLPSpec(info.obs_dim, info.act_dim, (8,), action_high=info.action_high)
    thetas = init_thetas(spec, 4, torch.Generator().manual_seed(0))
    eng = RolloutEngine("Hopper-v5", spec, num_envs=4, backend="mujoco", tolerate_faults=True)
    batch = eng._backend.batch
    calls = {"n": 0}
    real_step = batch.step

    def step(ids, nstep=1):
        calls["n"] += 1
        real_step(ids, nstep=nstep)
        if calls["n"] == 3:
            raise SimulationError(np.array([2]), "mjERROR stub")

    monkeypatch.setattr(batch, "step", step)
    res = eng.evaluate(thetas)
    assert res.failed.tolist() == [False, False, True, False] and np.isnan(res.returns[2])
    assert res.lengths[2] == 3 and "MuJoCo refused to step it" in eng.last_fault
    eng.tolerate_faults = False
    calls["n"] = 0
    with pytest.raises(EnvFault, match="MuJoCo refused"):
        eng.evaluate(thetas)
