"""UDRLPG: hindsight regression, interpolation, state round trips, exact resume, learning (slow)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from policygen.algorithms.base import RunConfig, make_config
from policygen.algorithms.trainer import resume_run, start_run
from policygen.algorithms.udrlpg import UDRLPG, UDRLPGConfig
from policygen.envs.make import EnvInfo, env_info
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import forward
from policygen.rollout.engine import RolloutEngine
from policygen.runs.files import load_state, save_state

INFO = EnvInfo("Synthetic-v0", obs_dim=3, act_dim=1, action_high=(1.0,), max_episode_steps=10,
               survival_bonus=0.0)
SMALL = dict(policy_hidden=(8, 8), chunk=4, embed_dim=4, generator_hidden=(32, 32), batch_size=8,
             hand_set_range=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small(seed: int = 0, **kw) -> UDRLPG:
    return UDRLPG(UDRLPGConfig(**{**SMALL, **kw}), INFO, seed)


def _targets(p: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p, generator=g) * 0.5, torch.randn(p, generator=g) * 0.5


def test_regression_loss_decreases_and_g_interpolates():
    algo = small(learning_rate=3e-3, n_buckets=10, bucket_weighting="uniform")
    a, b = _targets(algo.spec.num_params)
    algo.buffer = algo._make_buffer(0.0, 1.0)
    algo.buffer.add(torch.stack([a, b]), [0.0, 1.0])  # theta a achieved return 0, theta b return 1
    first = algo.fit(5)
    for _ in range(30):
        last = algo.fit(10)
    assert last < 0.02 * first, (first, last)
    ga, gm, gb = algo.generate([0.0, 0.5, 1.0])
    span = float((b - a).norm())
    assert float((ga - a).norm()) < 0.1 * span and float((gb - b).norm()) < 0.1 * span
    # G(0.5) lies between the targets: its projection on the segment is interior, and it is closer
    # to the segment than the targets are to each other
    t = float(torch.dot(gm - a, b - a)) / span**2
    off = float((gm - (a + t * (b - a))).norm())
    assert 0.3 < t < 0.7 and off < 0.2 * span, (t, off)


def test_regression_pulls_g_to_the_policy_of_each_command():
    """A wrong sign or a shuffled (command, theta) pairing would fail here."""
    algo = small(learning_rate=3e-3, n_buckets=4, bucket_weighting="uniform")
    a, b = _targets(algo.spec.num_params, seed=1)
    algo.buffer = algo._make_buffer(0.0, 1.0)
    algo.buffer.add(torch.stack([a, b]), [0.1, 0.9])
    for _ in range(20):
        algo.fit(10)
    g_low, g_high = algo.generate([0.1, 0.9])
    assert (g_low - a).norm() < (g_low - b).norm() and (g_high - b).norm() < (g_high - a).norm()


def test_commands_are_scaled_and_eval_uses_the_best():
    algo = small(return_range=(-100.0, 300.0))
    algo.buffer = algo._make_buffer(*algo._fixed_range())
    algo.buffer.add(torch.zeros(2, algo.spec.num_params), [20.0, 100.0])
    assert algo.scale_range() == (-100.0, 300.0)
    theta, command = algo.eval_policy()
    assert command == pytest.approx(100.0)
    assert torch.allclose(theta, algo.generate([100.0])[0])
    with torch.no_grad():
        assert torch.allclose(theta, algo.gen(torch.tensor([[0.5]]))[0])


def test_hand_set_range_and_learned_range():
    cfg = dict(SMALL, hand_set_range=True)
    ip = UDRLPG(UDRLPGConfig(**cfg), env_info("InvertedPendulum-v5"), 0)
    assert ip._fixed_range() == (0.0, 1000.0)
    assert small()._fixed_range() is None


def test_learned_range_doubles_and_keeps_commands_in_unit_interval():
    algo = small(n_buckets=8)
    algo.buffer = algo._make_buffer(0.0, 10.0)

    algo._store(torch.zeros(1, algo.spec.num_params), np.array([35.0]), np.zeros(1, bool), np.array([35.0]))
    assert algo.scale_range() == (0.0, 40.0)  # 10 -> 20 -> 40
    assert 0.5 < algo.buffer.best_scaled <= 1.0
    assert algo.seen_return_range() == (35.0, 35.0)


class _Res:
    def __init__(self, r):
        self.train_returns, self.failed = np.array(r, float), np.zeros(len(r), bool)
        self.lengths = np.full(len(r), 10.0)


class _ReplayEngine:
    """Stands in for the engine: every episode of a policy earns its theta[0]."""

    def __init__(self):
        self.calls = []

    def evaluate(self, thetas, episodes=1, update_stats=False):
        self.calls.append((len(thetas), episodes))
        return _Res([float(t[0]) for t in thetas])


@pytest.mark.parametrize("k", [0, 3])
def test_confirm_episodes_relabel_record_candidates_with_their_mean(k):
    algo = small(n_buckets=10, return_range=(0.0, 100.0), confirm_episodes=k)
    algo.buffer = algo._make_buffer(0.0, 100.0)
    algo.buffer.add(torch.zeros(1, algo.spec.num_params), [50.0])
    thetas = torch.zeros(3, algo.spec.num_params)
    thetas[:, 0] = torch.tensor([20.0, 30.0, 40.0])  # what each policy earns on average
    first = _Res([20.0, 90.0, 60.0])  # one episode each: policies 1 and 2 beat the best (50) by luck
    engine = _ReplayEngine()
    stored = algo._store(thetas, *algo._confirmed(engine, thetas, first), first.lengths)
    if k == 0:
        assert engine.calls == [] and stored.tolist() == [20.0, 90.0, 60.0]
        assert algo.buffer.best_return == 90.0  # c* now rests on one lucky episode
    else:
        assert engine.calls == [(2, 3)]  # only the two record candidates, k more episodes each
        assert stored.tolist() == pytest.approx([20.0, (90 + 3 * 30) / 4, (60 + 3 * 40) / 4])
        assert algo.buffer.best_return == 50.0  # neither beats the best once averaged
        assert algo.episodes == 3 + 6


def test_population_grows_while_episodes_are_short():
    algo = small(rollout_repeats=2, rollout_steps=100)
    assert algo._population(64) == 2  # no episode yet
    for length, want in [(10.0, 10), (1000.0, 2), (1.0, 100), (33.0, 4)]:
        algo.last_length = length
        assert algo._population(64) == want, length
    algo.last_length = 1.0
    assert algo._population(16) == 64  # at most 4 waves of the engine's slots
    fixed = small(rollout_repeats=3)
    fixed.last_length = 1.0
    assert fixed._population(64) == 3


@pytest.mark.parametrize("bad", [dict(n_buckets=0), dict(n_buckets=-3), dict(bucket_max_size=0),
                                 dict(return_range=(5.0, 5.0)), dict(return_range=(1.0,)),
                                 dict(buffer="lifo"), dict(bucket_replace="oldest"),
                                 dict(learning_rate=0.0), dict(return_convention="bonus"),
                                 dict(rollout_steps=-1), dict(noise_scaling="layer"),
                                 dict(bucket_uniform_mix=-0.1), dict(bucket_uniform_mix=1.5),
                                 dict(confirm_episodes=-1), dict(confirm_episodes=1.5),
                                 dict(bucket_max_age=-1), dict(noise_free_spread=-1), dict(noise_free_spread=0.5),
                                 dict(noise_subspace=-1), dict(noise_subspace=2.5),
                                 dict(generator="gan"), dict(cvae_latent=0), dict(cvae_kl_weight=-1.0)])
def test_bad_config_refused(bad):
    with pytest.raises(PolicygenError):
        UDRLPGConfig(**bad)


def test_generate_refuses_before_warmup_and_bad_commands():
    algo = small()
    with pytest.raises(PolicygenError, match="warm-up"):
        algo.generate([1.0])
    algo.buffer = algo._make_buffer(0.0, 1.0)
    with pytest.raises(PolicygenError, match="finite"):
        algo.generate([float("nan")])


def _play(algo: UDRLPG, engine: RolloutEngine, n: int) -> list[dict]:
    return [algo.iterate(engine) for _ in range(n)]


@pytest.mark.parametrize("buffer,generator", [("buckets", "deterministic"), ("fifo", "deterministic"),
                                              ("buckets", "cvae")])
def test_state_roundtrip_continues_identically(tmp_path, stub_id, buffer, generator):
    kw = dict(rollout_repeats=3, warmup_runs=4, warmup_noise=True, learning_rate=1e-3, buffer=buffer,
              update_repeats=2, generator=generator, cvae_latent=4)
    info = env_info(stub_id)
    algo = UDRLPG(UDRLPGConfig(**{**SMALL, **kw}), info, 3)
    eng = RolloutEngine(stub_id, algo.spec, num_envs=4, backend="gymnasium", seed=0)
    _play(algo, eng, 3)
    save_state(tmp_path / "a.safetensors", {"algo": algo.state_dict()}, kind="checkpoint")
    twin = UDRLPG(UDRLPGConfig(**{**SMALL, **kw}), info, 99)  # other seed: everything must come from the state
    twin.load_state_dict(load_state(tmp_path / "a.safetensors", kind="checkpoint")["algo"])
    eng2 = RolloutEngine(stub_id, algo.spec, num_envs=4, backend="gymnasium", seed=0)
    eng.reseed(5)
    eng2.reseed(5)
    eng2.obs_stats = eng.obs_stats.copy()
    assert _play(algo, eng, 3) == _play(twin, eng2, 3)
    assert torch.equal(algo.eval_policy()[0], twin.eval_policy()[0])


def test_rebase_buffer_keeps_stored_policies_acting_as_when_they_earned_their_return(stub_id):
    algo = UDRLPG(UDRLPGConfig(**{**SMALL, "rollout_repeats": 3, "warmup_runs": 4, "warmup_noise": True,
                                 "update_repeats": 2, "rebase_buffer": True}), env_info(stub_id), 0)
    eng = RolloutEngine(stub_id, algo.spec, num_envs=4, backend="gymnasium", seed=0)
    algo.iterate(eng)  # warm-up
    stored = {a: t.clone() for a, _, t in (e for b in algo.buffer.buckets.values() for e in b)}
    norm = (eng.obs_stats.mean.copy(), eng.obs_stats.std.copy())
    algo.iterate(eng)
    assert not np.allclose(norm[0], eng.obs_stats.mean)  # the statistics moved
    obs = np.random.default_rng(0).normal(size=(5, algo.spec.obs_dim)) * 2
    kept = [e for b in algo.buffer.buckets.values() for e in b if e[0] in stored]
    assert kept
    def act(theta, n):
        return forward(algo.spec, theta.expand(5, -1), torch.as_tensor((obs - n[0]) / n[1]).float())

    for a, _, theta in kept:  # warm-up policies: the same actions on raw observations as before
        assert torch.allclose(act(theta, (eng.obs_stats.mean, eng.obs_stats.std)), act(stored[a], norm), atol=1e-5)
        assert not torch.equal(theta, stored[a])


def test_rebase_after_and_freeze_stats_after_start_at_their_env_step(stub_id):
    def run(**over):
        algo = UDRLPG(UDRLPGConfig(**{**SMALL, "rollout_repeats": 3, "warmup_runs": 4, "warmup_noise": True,
                                     "update_repeats": 2, **over}), env_info(stub_id), 0)
        eng = RolloutEngine(stub_id, algo.spec, num_envs=4, backend="gymnasium", seed=0)
        algo.iterate(eng)  # warm-up: a few dozen stub steps
        warm = eng.env_steps
        stored = {a: t.clone() for a, _, t in (e for b in algo.buffer.buckets.values() for e in b)}
        means = [eng.obs_stats.mean.copy()]
        for _ in range(3):
            algo.iterate(eng)
            means.append(eng.obs_stats.mean.copy())
        same = [torch.equal(t, stored[a]) for a, _, t in (e for b in algo.buffer.buckets.values() for e in b)
                if a in stored]
        return warm, means, same

    warm, means, same = run(rebase_buffer=True, rebase_after=10**9)  # never reached: stored policies untouched
    assert same and all(same) and not np.allclose(means[0], means[-1])
    _, _, same = run(rebase_buffer=True, rebase_after=1)  # reached after the warm-up: re-based
    assert same and not any(same)
    _, means, _ = run(freeze_stats_after=warm)  # frozen from the first iteration on
    assert all(np.array_equal(means[0], m) for m in means[1:])
    _, means, _ = run(freeze_stats_after=10**9)
    assert not np.allclose(means[0], means[-1])
    for bad in ({"rebase_after": -1}, {"freeze_stats_after": 0.5}):
        with pytest.raises(PolicygenError, match="integer >= 0"):
            UDRLPGConfig(**bad)


def _rows(run) -> list[dict]:
    with open(run.path / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


class Killed(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    rc = RunConfig(env_id="InvertedPendulum-v5", steps=1500, seed=2, backend="gymnasium", num_envs=8,
                   eval_every=400, eval_episodes=2, checkpoint_every=3)
    over = {"policy_hidden": "16,16", "chunk": "8", "embed_dim": "4", "generator_hidden": "32,32",
            "rollout_repeats": "4", "update_repeats": "2"}
    full = start_run("udrlpg", rc, str(tmp_path / "full"), overrides=over, quiet=True)
    calls, real = {"n": 0}, UDRLPG.iterate

    def dying(self, engine):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at iteration 3
            raise Killed
        return real(self, engine)

    monkeypatch.setattr(UDRLPG, "iterate", dying)
    with pytest.raises(Killed):
        start_run("udrlpg", rc, str(tmp_path / "killed"), overrides=over, quiet=True)
    monkeypatch.setattr(UDRLPG, "iterate", real)
    assert full.summary["iterations"] > 5
    resumed = resume_run(str(tmp_path / "killed"), quiet=True)
    assert _rows(resumed) == _rows(full)
    assert resumed.summary["final_eval_return"] == full.summary["final_eval_return"]


def _load(run) -> tuple[UDRLPG, dict]:
    cfg = run.config
    algo = UDRLPG(make_config(UDRLPGConfig, cfg["algo"], None), env_info(cfg["run"]["env_id"]),
                  cfg["run"]["seed"])
    state = run.load_checkpoint()
    algo.load_state_dict(state["algo"])
    return algo, state


def _pendulum_sweep(tmp_path, seed: int) -> tuple[dict, np.ndarray, np.ndarray, float, float]:
    """A 60k-step pendulum run with a quarter of the batches drawn from the buckets evenly, then its sweep."""
    rc = RunConfig(env_id="InvertedPendulum-v5", steps=60_000, eval_every=10_000, eval_episodes=5, seed=seed)
    run = start_run("udrlpg", rc, out=str(tmp_path / f"run{seed}"), overrides={"bucket_uniform_mix": "0.25"},
                    quiet=True)
    algo, state = _load(run)
    lo, hi = algo.seen_return_range()
    commands = np.linspace(lo, hi, 8)
    engine = RolloutEngine("InvertedPendulum-v5", algo.spec, num_envs=24, seed=123,
                           return_convention=algo.return_convention)
    engine.obs_stats.load_state_dict(state["obs_stats"])
    achieved = engine.evaluate(algo.generate(commands), episodes=3, count_steps=False).train_returns
    return run.summary, commands, achieved, lo, hi


def _follows(achieved: np.ndarray, lo: float, hi: float) -> bool:
    """"Rises with the command": the top commands beat the bottom ones by a large part of the range, and no
    higher command does clearly worse than a lower one. Not a rank correlation: InvertedPendulum's returns are
    nearly bimodal, so a run's sweep is often a step (about 45 up to some command, then 1000), and ranks inside
    the plateau measure the +-2 noise of policies that all fall within 50 steps."""
    worst_drop = max(achieved[i] - achieved[j] for i in range(len(achieved)) for j in range(i + 1, len(achieved)))
    return achieved[-2:].mean() - achieved[:2].mean() >= 0.4 * (hi - lo) and worst_drop <= 0.05 * (hi - lo)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_learns_inverted_pendulum_and_follows_commands(tmp_path):
    # Two seeds, and one must both learn and follow the command: on the pendulum whether a run's G follows c
    # is a matter of the seed (and of the CPU's float rounding). 60k steps on an Intel Xeon, 2026-12-05: with
    # bucket_uniform_mix 0.25 seeds 0, 1, 3 pass and seed 2 has not learned yet (then with rebase_buffer; it
    # passes without it too, 90 s on the same machine, 2026-12-05 19:20 UTC); with the fast preset's
    # exp weighting alone G(c) is the top policy for every command on seeds 0-1, nearly so on seed 2
    # (bench/results/udrlpg-ip-60k-fast.md). A G that
    # ignores c, or a regression that does not learn, fails both seeds.
    results = [_pendulum_sweep(tmp_path, seed) for seed in (0, 1)]
    assert any(summary["best_eval_return"] >= 900 and hi >= 900 and _follows(achieved, lo, hi)
               for summary, _, achieved, lo, hi in results), [(c, a) for _, c, a, _, _ in results]


def test_cvae_rollouts_draw_a_latent_per_policy_and_evaluation_uses_zero(stub_id):
    algo = UDRLPG(UDRLPGConfig(**{**SMALL, "generator": "cvae", "cvae_latent": 3, "noise_policy": 0.0,
                                 "warmup_runs": 4}), env_info(stub_id), 0)
    thetas = algo._noisy(0.5, 4, 0.0)
    assert not torch.allclose(thetas[0], thetas[1])  # no parameter noise: the latents make them differ
    algo.buffer = algo._make_buffer(0.0, 1.0)
    algo.buffer.add(thetas, [0.1, 0.2, 0.3, 0.4])
    assert algo.fit(2) is not None
    assert torch.equal(algo.generate([0.5]), algo.generate([0.5]))  # z = 0: deterministic
    assert torch.equal(algo.generate([0.5])[0], algo.gen(torch.tensor([[0.5]]), torch.zeros(1, 3))[0])


def test_fast_drops_old_policies_and_paper_keeps_them():
    fast = make_config(UDRLPGConfig, UDRLPG.presets["fast"], None)
    paper = make_config(UDRLPGConfig, UDRLPG.presets["paper"], None)
    assert (fast.bucket_max_age, paper.bucket_max_age) == (1000, 0)  # paper: c* is the best return ever seen


class _RecordingEngine(_ReplayEngine):
    num_envs, env_steps = 4, 0

    class obs_stats:  # noqa: N801  (stands in for RunningStats)
        mean, std = np.zeros(3), np.ones(3)

    def evaluate(self, thetas, episodes=1, update_stats=False):
        self.thetas = thetas.clone()
        return super().evaluate(thetas, episodes, update_stats)


def test_noise_free_spread_rolls_out_g_itself_across_the_seen_returns():
    algo = small(rollout_repeats=5, noise_policy=0.1, noise_free_spread=2, update_repeats=0)
    algo.buffer = algo._make_buffer(0.0, 100.0)
    algo.buffer.add(torch.zeros(2, algo.spec.num_params), [20.0, 80.0])
    algo.lowest_return, algo.best_return = 20.0, 80.0
    engine = _RecordingEngine()
    algo.iterate(engine)
    thetas = engine.thetas
    assert len(thetas) == 5
    grid = algo.gen(torch.linspace(0.0, 1.0, 1001).unsqueeze(1)).detach()
    for theta in thetas[3:]:  # the last two: G(c) exactly, at a command between 20 and 80 (scaled 0.2-0.8)
        nearest = (grid - theta).norm(dim=1).argmin().item() / 1000
        assert 0.2 - 1e-3 <= nearest <= 0.8 + 1e-3
        assert (grid - theta).norm(dim=1).min() < 1e-3 * theta.norm()
    noisy = (thetas[:3] - algo.gen(torch.tensor([[0.8]])).detach()).norm(dim=1)
    assert (noisy > 0.05 * thetas[0].numel() ** 0.5).all()  # the first three explore around G(c*) with noise


def test_subspace_noise_has_rank_k_and_the_per_weight_scale_of_full_noise():
    full, sub = small(noise_policy=0.1), small(noise_policy=0.1, noise_subspace=4)
    eps_full = full._noisy(0.5, 400, 0.1) - full._noisy(0.5, 1, 0.0)
    eps_sub = sub._noisy(0.5, 400, 0.1) - sub._noisy(0.5, 1, 0.0)
    assert torch.linalg.matrix_rank(eps_sub) == 4 and torch.linalg.matrix_rank(eps_full) > 4
    assert float(eps_sub.std()) == pytest.approx(0.1, rel=0.15)
    assert float(eps_full.std()) == pytest.approx(0.1, rel=0.05)
    assert torch.equal(small(noise_subspace=4).noise_basis, sub.noise_basis)  # seeded: a resumed run has the same
