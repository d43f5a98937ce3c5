"""The ray backend: the engine over a local 2-CPU Ray cluster (one cluster shared by every test here)."""

import csv
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import start_run
from policygen.envs.make import env_info
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, init_thetas
from policygen.rollout import make_engine
from policygen.rollout.engine import RolloutEngine

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'policygen[ray]')")
from policygen.rollout import ray_engine  # noqa: E402  (after the skip: it needs nothing of ray to import)

DET = {"reset_noise_scale": 0.0}  # deterministic initial states: returns do not depend on episode seeds


@pytest.fixture(scope="module")
def cluster():
    ray_engine.connect(None, 2)
    yield
    ray_engine.shutdown()


def _spec(env="Hopper-v5", hidden=(16,)):
    info = env_info(env)
    return MLPSpec(info.obs_dim, info.act_dim, hidden, action_high=info.action_high)


def _same(a, b):
    assert np.array_equal(a.returns, b.returns)
    assert np.array_equal(a.lengths, b.lengths)
    assert np.array_equal(a.failed, b.failed)
    assert np.array_equal(a.episode_returns, b.episode_returns)
    assert a.env_steps == b.env_steps


def test_one_worker_is_the_local_engine_bit_for_bit(cluster):
    spec = _spec()
    th = init_thetas(spec, 24, torch.Generator().manual_seed(0))
    loc = RolloutEngine("Hopper-v5", spec, num_envs=8, seed=3)
    ray1 = make_engine("Hopper-v5", spec, num_envs=8, seed=3, backend="ray", ray_workers=1)
    for episodes, record in ((1, False), (2, True), (1, False)):  # environments carry on across calls
        a = loc.evaluate(th, episodes=episodes, update_stats=True, record=record)
        b = ray1.evaluate(th, episodes=episodes, update_stats=True, record=record)
        _same(a, b)
        if record:
            assert len(a.trajectories) == len(b.trajectories) == 48
            for ta, tb in zip(a.trajectories, b.trajectories, strict=True):
                assert all(np.array_equal(ta[k], tb[k]) for k in ("obs", "actions", "rewards"))
    assert loc.env_steps == ray1.env_steps
    assert loc.obs_stats.count == ray1.obs_stats.count
    assert np.array_equal(loc.obs_stats.mean, ray1.obs_stats.mean) and np.array_equal(loc.obs_stats.m2,
                                                                                       ray1.obs_stats.m2)
    loc.reseed(11)
    ray1.reseed(11)
    _same(loc.evaluate(th[:5]), ray1.evaluate(th[:5]))
    loc.close()
    ray1.close()


def test_two_workers_are_two_seeded_local_streams_and_merge_stats_exactly(cluster):
    """Chunk c of the thetas runs on stream c = a local engine of num_envs/2 slots seeded stream_seed(seed, c)."""
    spec = _spec()
    th = init_thetas(spec, 30, torch.Generator().manual_seed(1))
    ray2 = make_engine("Hopper-v5", spec, num_envs=8, seed=5, backend="ray", ray_workers=2)
    streams = [RolloutEngine("Hopper-v5", spec, num_envs=4, seed=ray_engine.stream_seed(5, c)) for c in (0, 1)]
    for _ in range(2):
        stats0 = ray2.obs_stats.copy()
        got = ray2.evaluate(th, update_stats=True)
        parts = []
        for eng, rows in zip(streams, (th[:15], th[15:]), strict=True):
            eng.obs_stats = stats0.copy()  # the driver's statistics, frozen for the call
            parts.append(eng.evaluate(rows))
        assert np.array_equal(got.returns, np.concatenate([p.returns for p in parts]))
        assert np.array_equal(got.lengths, np.concatenate([p.lengths for p in parts]))
        assert got.env_steps == sum(p.env_steps for p in parts)
        every = stats0.copy()
        for p in parts:
            every.merge_stats(p.obs_stats)
        assert ray2.obs_stats.count == every.count
        assert np.allclose(ray2.obs_stats.mean, every.mean, rtol=1e-12, atol=0)
        assert np.allclose(ray2.obs_stats.m2, every.m2, rtol=1e-12, atol=0)
    assert ray2.env_steps == ray2.obs_stats.count  # one observation per env step, each counted once
    ray2.close()
    for e in streams:
        e.close()


def test_two_workers_match_the_local_engine_on_deterministic_starts(cluster):
    spec = _spec()
    th = init_thetas(spec, 32, torch.Generator().manual_seed(2))
    loc = RolloutEngine("Hopper-v5", spec, num_envs=8, seed=0, env_kwargs=DET)
    ray2 = make_engine("Hopper-v5", spec, num_envs=8, seed=0, backend="ray", ray_workers=2, env_kwargs=DET)
    a, b = loc.evaluate(th, update_stats=True), ray2.evaluate(th, update_stats=True)
    assert np.allclose(a.returns, b.returns, rtol=1e-9) and np.array_equal(a.lengths, b.lengths)
    assert a.env_steps == b.env_steps and loc.obs_stats.count == ray2.obs_stats.count
    assert np.allclose(loc.obs_stats.mean, ray2.obs_stats.mean, rtol=1e-10)
    assert np.allclose(loc.obs_stats.m2, ray2.obs_stats.m2, rtol=1e-10)
    loc.close()
    ray2.close()


def test_success_signal_comes_back_through_ray(cluster):
    """MetaWorld's info["success"]: the same successes as the local engine, per policy and per episode."""
    env = "MetaWorld/Reach-v3"
    spec = MLPSpec(39, 4, (), "tanh", "clip", (1.0,) * 4, bias=True)
    w = np.zeros((4, 39))
    w[:3, 36:39], w[:3, 0:3] = 10 * np.eye(3), -10 * np.eye(3)  # move the hand to the goal
    expert = torch.tensor(np.concatenate([w.ravel(), np.zeros(4)]), dtype=torch.float32)
    th = torch.stack([expert, torch.zeros(spec.num_params), expert])
    kw = {"max_episode_steps": 60}
    loc = RolloutEngine(env, spec, num_envs=2, seed=0, normalize_obs=False, env_kwargs=kw)
    ray2 = make_engine(env, spec, num_envs=2, seed=0, backend="ray", ray_workers=2, normalize_obs=False,
                       env_kwargs=kw)
    a, b = loc.evaluate(th, episodes=2), ray2.evaluate(th, episodes=2)
    np.testing.assert_array_equal(b.successes, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(a.successes, b.successes)
    assert b.episode_successes.shape == (3, 2) and b.episode_successes.dtype == bool
    no_signal = make_engine("Hopper-v5", _spec(), num_envs=2, seed=0, backend="ray", ray_workers=2)
    assert no_signal.evaluate(init_thetas(_spec(), 2, torch.Generator().manual_seed(0))).successes is None
    for e in (loc, ray2, no_signal):
        e.close()


def test_killing_a_worker_mid_batch_loses_nothing_and_counts_nothing_twice(cluster):
    spec = _spec("Swimmer-v5", (8,))  # Swimmer's episodes never end early: 1000 steps each
    th = init_thetas(spec, 32, torch.Generator().manual_seed(3))
    ref_engine = RolloutEngine("Swimmer-v5", spec, num_envs=32, seed=0, env_kwargs=DET)
    ref = ref_engine.evaluate(th, update_stats=True)
    assert ref.env_steps == 32_000
    # 2 slots per worker: 8 waves of 1000 steps, a call long enough to kill a worker in it
    eng = make_engine("Swimmer-v5", spec, num_envs=4, seed=0, backend="ray", ray_workers=2, env_kwargs=DET)
    eng.evaluate(th[:2])  # warm: both actors up, streams built
    eng.env_steps, eng.obs_stats = 0, type(eng.obs_stats)(spec.obs_dim)
    victim = eng.pids()[0]
    box = {}
    t = threading.Thread(target=lambda: box.update(res=eng.evaluate(th, update_stats=True)))
    t.start()
    time.sleep(0.3)
    in_flight = t.is_alive()
    os.kill(victim, signal.SIGKILL)
    t.join(300)  # a hang detector, so generous: at load 5 on 2 cores this test took 214 s (23 s alone)
    assert in_flight and not t.is_alive()
    res = box["res"]
    assert eng.faults >= 1
    assert not res.failed.any() and np.isfinite(res.returns).all()
    assert np.allclose(res.returns, ref.returns, rtol=1e-9) and np.array_equal(res.lengths, ref.lengths)
    assert res.env_steps == ref.env_steps == eng.env_steps  # the dead worker's partial episodes not counted
    assert eng.obs_stats.count == ref_engine.obs_stats.count == ref.env_steps
    again = eng.evaluate(th[:8])  # the pool goes on (the stream moved; Ray restarts the dead actor)
    assert np.isfinite(again.returns).all()
    eng.reseed(1)  # streams back on their own actors, the restarted one included
    assert np.isfinite(eng.evaluate(th[:8]).returns).all()
    assert victim not in eng.pids()
    eng.close()
    ref_engine.close()


def _rows(run):
    with open(run.path / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


TINY = {"hidden": "8", "n_probe": "8", "evaluator_hidden": "32", "generator_hidden": "32", "chunk": "8",
        "policies_per_iteration": "8", "evaluator_steps": "2", "generator_steps": "2", "batch_size": "8",
        "generator_warmup": "0"}


def test_seeded_gogepo_run_on_ray(cluster, tmp_path):
    """One worker: the local run's numbers exactly. Two: deterministic, and the local run's on fixed starts."""
    def run(name, backend="auto", workers=0, env_kwargs=None):
        rc = RunConfig(env_id="InvertedPendulum-v5", steps=1200, seed=4, backend=backend, ray_workers=workers,
                       num_envs=8, eval_every=400, eval_episodes=2, checkpoint_every=3, env_kwargs=env_kwargs or {})
        return _rows(start_run("gogepo", rc, str(tmp_path / name), overrides=TINY, quiet=True))

    local = run("local")
    assert run("ray1", "ray", 1) == local
    two = run("ray2", "ray", 2)
    assert two != local  # other episode seeds per stream (module docstring of ray_engine)
    assert [r["env_steps"] for r in run("ray2b", "ray", 2)] == [r["env_steps"] for r in two]
    det_local, det_two = run("dl", env_kwargs=DET), run("d2", "ray", 2, DET)
    for a, b in zip(det_local, det_two, strict=True):
        assert a["env_steps"] == b["env_steps"]
        assert float(a["train_return_mean"]) == pytest.approx(float(b["train_return_mean"]), rel=1e-6)


def test_bad_input_is_one_clear_line(cluster):
    spec = _spec()
    listed = r"\['auto', 'envpool', 'gymnasium', 'mujoco', 'ray'\]"
    with pytest.raises(PolicygenError, match=r"backend 'rey' is not one of " + listed):
        make_engine("Hopper-v5", spec, backend="rey")
    with pytest.raises(PolicygenError, match="need --backend ray"):
        make_engine("Hopper-v5", spec, backend="gymnasium", ray_address="127.0.0.1:6379")
    with pytest.raises(PolicygenError, match="backend 'ray' spreads the whole engine"):
        RolloutEngine("Hopper-v5", spec, backend="ray")
    with pytest.raises(PolicygenError, match="--ray-workers must be >= 1"):
        make_engine("Hopper-v5", spec, backend="ray", ray_workers=-2)


def test_unreachable_ray_address_is_one_clear_line(cluster, capsys, tmp_path):
    from policygen.cli import main

    argv = ["bench", "rollout", "--backend", "ray", "--ray-address", "127.0.0.1:9", "--seconds", "1"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("policygen: error: no Ray cluster reachable at --ray-address "
                                                   "'127.0.0.1:9'"), lines
    out = tmp_path / "run"
    for addr, says in (("nohost", "is not HOST:PORT"), ("127.0.0.1:9", "no Ray cluster reachable")):
        argv = ["train", "ars", "--env", "Hopper-v5", "--backend", "ray", "--ray-address", addr, "--out", str(out)]
        assert main(argv) == 2
        assert says in capsys.readouterr().err
        assert not out.exists()  # checked before the run directory is made
