"""Rollout accounting against stub environments whose returns and lengths are known in closed form."""

import numpy as np
import pytest
import torch
from conftest import stub_length

from policygen.envs.make import env_info
from policygen.errors import EnvFault, PolicygenError
from policygen.policies import MLPSpec
from policygen.policies.flat_mlp import init_thetas
from policygen.rollout import RolloutEngine

# a bias-only linear policy: action = clip(b) whatever the observation
SPEC = MLPSpec(2, 1, (), output="none", bias=True)


def constant_policies(actions):
    return torch.tensor([[0.0, 0.0, a] for a in actions])


def expected(a, healthy=0.0, limit=12):
    a = float(np.clip(a, -1, 1))
    n = min(stub_length(a), limit)
    return n * (a + healthy), n


@pytest.mark.parametrize("num_envs,procs", [(1, 1), (3, 1), (8, 1), (64, 1), (3, 2), (8, 3)])
def test_every_policy_once_with_its_own_return_and_length(stub_id, num_envs, procs):
    actions = np.linspace(-1, 1, 21)[:-1] + 0.03  # away from the rounding boundaries of the length
    eng = RolloutEngine(stub_id, SPEC, num_envs=num_envs, backend="gymnasium", normalize_obs=False,
                        num_threads=procs)
    res = eng.evaluate(constant_policies(actions))
    for i, a in enumerate(actions):
        ret, n = expected(a)
        assert res.lengths[i] == n and res.returns[i] == pytest.approx(ret, abs=1e-5)
    assert res.env_steps == int(res.lengths.sum()) == eng.env_steps
    # the engine is reusable: a second call gives the same numbers (deterministic stub)
    again = eng.evaluate(constant_policies(actions))
    np.testing.assert_array_equal(again.lengths, res.lengths)
    assert eng.env_steps == 2 * res.env_steps


def test_truncation_at_the_time_limit_ends_the_episode(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=2, backend="gymnasium", normalize_obs=False)
    res = eng.evaluate(constant_policies([1.0, 0.9]))  # natural lengths 15 and 15 > limit 12
    assert list(res.lengths) == [12, 12]


def test_survival_bonus_removed_only_from_training_returns(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=4, backend="gymnasium", normalize_obs=False,
                        return_convention="no_survival_bonus", env_kwargs={"healthy_reward": 1.0})
    res = eng.evaluate(constant_policies([-0.5, 0.5]))
    for i, a in enumerate([-0.5, 0.5]):
        std, n = expected(a, healthy=1.0)
        assert res.returns[i] == pytest.approx(std)
        assert res.train_returns[i] == pytest.approx(std - n)


def test_k_episodes_are_averaged_and_counted(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=3, backend="gymnasium", normalize_obs=False)
    res = eng.evaluate(constant_policies([0.2, -0.2]), episodes=3, record=True)
    assert res.episode_returns.shape == res.episode_lengths.shape == (2, 3)
    np.testing.assert_array_equal(res.episode_lengths.mean(axis=1), res.lengths)
    assert res.env_steps == 3 * (expected(0.2)[1] + expected(-0.2)[1])
    assert len(res.trajectories) == 6 and res.trajectories[0]["obs"].shape == (expected(0.2)[1], 2)


def test_observation_statistics_update_only_when_asked(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=2, backend="gymnasium")
    eng.evaluate(constant_policies([0.0]))
    assert eng.obs_stats.count == 0
    res = eng.evaluate(constant_policies([0.0]), update_stats=True, record=True)
    obs = res.trajectories[0]["obs"]
    assert eng.obs_stats.count == len(obs)
    np.testing.assert_allclose(eng.obs_stats.mean, obs.mean(axis=0), rtol=1e-6)


def test_non_finite_reward_is_a_clear_error(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=2, backend="gymnasium", env_kwargs={"nan_at": 3})
    with pytest.raises(EnvFault, match="non-finite reward"):
        eng.evaluate(constant_policies([0.0]))


def test_bad_inputs_are_refused(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=2, backend="gymnasium")
    with pytest.raises(PolicygenError, match="needs exactly 3"):
        eng.evaluate(torch.zeros(2, 4))
    with pytest.raises(PolicygenError, match="NaN"):
        eng.evaluate(torch.full((1, 3), float("nan")))
    with pytest.raises(PolicygenError, match="does not fit"):
        RolloutEngine(stub_id, MLPSpec(3, 1, ()), backend="gymnasium")
    with pytest.raises(PolicygenError, match="flat 1-D Box"):
        env_info("policygen-tests/Image-v0")
    with pytest.raises(PolicygenError, match="Discrete"):
        env_info("CartPole-v1")
    with pytest.raises(PolicygenError, match="did you mean Hopper-v5"):
        env_info("hoper-v5")
    with pytest.raises(PolicygenError, match="see gymnasium.registry") as err:
        env_info("Foo-v0")  # shares only the '-v0' with the registry: no suggestion
    assert "did you mean" not in str(err.value)
    with pytest.raises(PolicygenError, match="EnvPool"):
        RolloutEngine(stub_id, SPEC, backend="envpool")


@pytest.mark.parametrize("env_id", ["Hopper-v5", "InvertedPendulum-v5"])
def test_envpool_and_gymnasium_agree_from_the_same_initial_state(env_id):
    """With reset noise 0 both start from the same state; the simulators agree to float precision."""
    pytest.importorskip("envpool", reason="the envpool extra is not installed (scripts/setup.sh installs it)")
    info = env_info(env_id)
    spec = MLPSpec(info.obs_dim, info.act_dim, (32, 32), action_high=info.action_high)
    thetas = torch.randn(4, spec.num_params, generator=torch.Generator().manual_seed(0)) * 0.3
    out = {}
    for backend in ("envpool", "gymnasium"):
        eng = RolloutEngine(env_id, spec, num_envs=4, backend=backend, normalize_obs=False,
                            env_kwargs={"reset_noise_scale": 0.0})
        out[backend] = eng.evaluate(thetas)
        eng.close()
    np.testing.assert_array_equal(out["envpool"].lengths, out["gymnasium"].lengths)
    np.testing.assert_allclose(out["envpool"].returns, out["gymnasium"].returns, rtol=1e-4, atol=1e-3)


def test_same_seed_same_numbers_on_envpool():
    pytest.importorskip("envpool", reason="the envpool extra is not installed (scripts/setup.sh installs it)")
    info = env_info("Hopper-v5")
    spec = MLPSpec(info.obs_dim, info.act_dim, (16,), action_high=info.action_high)
    thetas = torch.randn(40, spec.num_params, generator=torch.Generator().manual_seed(0)) * 0.3
    runs = []
    for _ in range(2):
        eng = RolloutEngine("Hopper-v5", spec, num_envs=8, seed=3)
        runs.append([eng.evaluate(thetas, update_stats=True).returns for _ in range(2)])
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))


def test_bench_rollout_reports_the_engine_beside_the_raw_backend():
    from policygen.analysis.bench import bench_rollout

    out = bench_rollout("InvertedPendulum-v5", policies=8, hidden=(16,), seconds=0.4, backend="gymnasium",
                        num_envs=4)
    for key in ("engine_steps_per_s", "raw_steps_per_s", "ratio", "backend", "num_envs"):
        assert key in out
    assert out["ratio"] == pytest.approx(out["engine_steps_per_s"] / out["raw_steps_per_s"])
    assert 0 < out["slot_utilisation"] <= 1 and 0 < out["backend_share"] <= 1
    # the backend's calls alone bound the engine: removing everything else can only raise the ratio
    assert out["backend_only_ratio"] >= out["ratio"]


LEAN_CHECK = """
import sys
from policygen.rollout.backends import EnvPoolBackend, envpool_has
assert envpool_has("Hopper-v5") and envpool_has("MetaWorld/Reach-v3") and envpool_has("MountainCarContinuous-v0")
assert "envpool.jumanji" not in sys.modules and "matplotlib.pyplot" not in sys.modules, "not lean"
assert EnvPoolBackend("Hopper-v5", 2, 0).first_obs.shape == (2, 11)
assert envpool_has("Pong-v5"), "an id outside the lean domains must still be found"
import envpool
assert len(envpool.list_all_envs()) > 1000 and "matplotlib.pyplot" in sys.modules  # completed: envpool's own import
print("ok")
"""


def test_envpool_is_imported_lean_and_completes_itself_for_other_ids():
    """Our first import of EnvPool skips its Jumanji/matplotlib start-up (~1.3 s); any other use of the
    package, or an id outside the lean domains, gets EnvPool's complete import. A fresh process: imports
    are process-wide."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", LEAN_CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("env_id", ["Hopper-v5", "MetaWorld/Reach-v3"])
def test_envpool_direct_step_matches_the_public_step(env_id):
    """The backend steps EnvPool's C++ pool through ``_send``/``_recv``; the same seed and actions through
    EnvPool's public ``step`` must give the same observations, rewards, ends and success, slot by slot."""
    from policygen.rollout.backends import EnvPoolBackend

    direct, public = EnvPoolBackend(env_id, 6, 3), EnvPoolBackend(env_id, 6, 3)
    public._direct = None
    assert direct._direct is not None, "the direct layout was not recognised: the speed-up is off"
    rng = np.random.default_rng(0)
    act_dim = direct.pool.action_space.shape[0]
    ends = 0
    try:
        for _ in range(300):
            ids = np.sort(rng.choice(6, size=int(rng.integers(1, 7)), replace=False))
            actions = rng.uniform(-1, 1, size=(len(ids), act_dim))  # float64: the backend converts
            a, b = direct.step(ids, actions), public.step(ids, actions)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
            if direct.success is not None or public.success is not None:
                np.testing.assert_array_equal(direct.success, public.success)
            ends += int(a[2].sum() + a[3].sum())
    finally:
        direct.close()
        public.close()
    assert env_id.startswith("MetaWorld") or ends > 0, "no episode ended: terminations were not compared"


def test_sweep_removes_the_survival_bonus_per_episode_not_by_the_mean_length():
    from policygen.analysis.sweep import convention_returns
    from policygen.rollout.engine import RolloutResult

    # one policy, two episodes: falls at step 100 (standard 250) or hops 1000 steps (standard 2500)
    res = RolloutResult(np.array([1375.0]), np.array([825.0]), np.array([550.0]), 1100, np.array([False]),
                        episode_returns=np.array([[250.0, 2500.0]]), episode_lengths=np.array([[100, 1000]]))
    per_ep = convention_returns(res, 1.0)
    np.testing.assert_allclose(per_ep, [[150.0, 1500.0]])
    assert per_ep.mean() == res.train_returns[0] and per_ep.std() == 675.0  # by the mean length: 1125
    np.testing.assert_array_equal(convention_returns(res, 0.0), res.episode_returns)


def test_gymnasium_slots_over_processes_give_the_numbers_of_one_process():
    """Hopper episodes of different lengths, so slots reset at different times in every process."""
    info = env_info("Hopper-v5")
    spec = MLPSpec(info.obs_dim, info.act_dim, (8,), action_high=info.action_high)
    thetas = init_thetas(spec, 10, torch.Generator().manual_seed(0))
    runs = []
    for procs in (None, 2, 3):
        eng = RolloutEngine("Hopper-v5", spec, num_envs=4, backend="gymnasium", seed=3, num_threads=procs)
        res = eng.evaluate(thetas, episodes=2, update_stats=True, record=True)
        runs.append((res.returns, res.lengths, eng.obs_stats.mean, res.trajectories[7]["obs"]))
        eng.close()
    assert len(set(runs[0][1].ravel())) > 3  # the episodes did end at different steps
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_killed_gymnasium_worker_process_is_one_clear_error(stub_id):
    eng = RolloutEngine(stub_id, SPEC, num_envs=2, backend="gymnasium", normalize_obs=False, num_threads=2)
    eng.evaluate(constant_policies([0.1, 0.2]))
    worker = eng._backend._workers[0].proc
    worker.kill()
    worker.wait()
    with pytest.raises(EnvFault, match=r"worker process \(pid \d+\) ended with exit code -9"):
        eng.evaluate(constant_policies([0.1, 0.2]))
    eng.close()


@pytest.mark.parametrize("cores,threads,offset", [({0, 1}, 2, 0), ({0, 1}, 1, -1), ({2, 3}, 2, 2), ({0, 2}, 2, -1),
                                                  ({0, 1, 2, 3}, 2, -1)])
def test_envpool_threads_are_pinned_only_when_they_take_every_core_of_the_process(monkeypatch, cores, threads, offset):
    from policygen.rollout import backends

    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: cores)
    assert backends.pinned_offset(threads) == offset
