import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from policygen.algorithms.base import RunConfig, make_config
from policygen.algorithms.gogepo import GoGePo, GoGePoConfig
from policygen.algorithms.loading import load_run
from policygen.algorithms.trainer import build, resume_run, start_run
from policygen.envs.make import env_info
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import forward
from policygen.rollout.engine import RolloutEngine, RolloutResult
from policygen.runs.files import load_state, save_state
from policygen.runs.rundir import METRIC_COLUMNS

ENV = "InvertedPendulum-v5"
# a tiny GoGePo so the plumbing tests run in seconds
TINY = {"hidden": "16,16", "n_probe": "8", "evaluator_hidden": "32", "generator_hidden": "32",
        "chunk": "8", "policies_per_iteration": "4", "evaluator_steps": "2", "generator_steps": "2",
        "batch_size": "8", "generator_warmup": "0"}


def tiny(preset="fast", seed=0, **extra):
    over = {**TINY, **{k: str(v) for k, v in extra.items()}}
    cfg = make_config(GoGePoConfig, GoGePo.presets[preset], over)
    return GoGePo(cfg, env_info(ENV), seed)


def engine_for(algo, seed=0):
    return RolloutEngine(ENV, algo.spec, num_envs=8, seed=seed, return_convention=algo.return_convention)


def test_presets_and_config_errors():
    assert GoGePo.preset_for("InvertedPendulum-v5") == GoGePo.preset_for("Walker2d-v5") == "fast"
    assert GoGePo.preset_for("Swimmer-v5") == GoGePo.preset_for("MountainCarContinuous-v0") == "fast-explore"
    assert GoGePo.preset_for("Hopper-v5") == "fast-heads"
    explore = make_config(GoGePoConfig, GoGePo.presets["fast-explore"], None)
    fanin = make_config(GoGePoConfig, GoGePo.presets["fast-fanin"], None)
    fast = make_config(GoGePoConfig, GoGePo.presets["fast"], None)
    heads = make_config(GoGePoConfig, GoGePo.presets["fast-heads"], None)
    assert {**asdict(heads), "evaluator_heads": 1, "probes_by_first_head": False} == asdict(fanin)
    assert (fast.noise_free_share, explore.noise_free_share) == (1.0, 0.25)
    assert (fast.generated_command_frac, explore.generated_command_frac) == (0.0, 0.25)
    assert {**asdict(explore), "noise_free_share": 1.0, "generated_command_frac": 0.0} == asdict(fast)  # the two
    assert {**asdict(fanin), "noise_scaling": "uniform", "sigma": 0.1, "anchor_weight": 1.0} == asdict(fast)
    hopper = build("gogepo", RunConfig(env_id="Hopper-v5"), None, None)[1]  # a Hopper run with no --preset
    assert (hopper.noise_scaling, hopper.evaluator_heads, hopper.probes_by_first_head) == ("fan_in", 5, True)
    _, cfg, preset = build("gogepo", RunConfig(env_id="Swimmer-v5"), None, None)  # a run with no --preset
    assert (preset, cfg.noise_free_share) == ("fast-explore", 0.25)
    assert build("gogepo", RunConfig(env_id="Swimmer-v5"), "fast", None)[2] == "fast"  # named: kept
    paper = make_config(GoGePoConfig, GoGePo.presets["paper"], None)
    assert (paper.evaluator_steps, paper.generator_steps, paper.batch_size) == (5, 20, 16)
    assert (paper.evaluator_lr, paper.generator_lr, paper.sigma, paper.buffer_size) == (5e-3, 2e-6, 0.1, 10_000)
    assert paper.policies_per_iteration == 1 and paper.n_probe == 200 and paper.hidden == (256, 256)
    algo = GoGePo(paper, env_info(ENV), 0)
    assert algo.spec.num_params == 67_329  # the paper's InvertedPendulum policy
    assert algo.paper_range == (0.0, 1000.0)
    with pytest.raises(PolicygenError, match="return_range"):
        GoGePo(paper, env_info("Pendulum-v1"), 0)
    ok = make_config(GoGePoConfig, GoGePo.presets["paper"], {"return_range": "-1500,0", "hidden": "8"})
    assert GoGePo(ok, env_info("Pendulum-v1"), 0).paper_range == (-1500.0, 0.0)
    for bad in ({"return_scaling": "minmax"}, {"batch_size": "0"}, {"buffer_dtype": "int8"},
                {"return_convention": "bonus"}, {"sigma": "-1"}, {"noise_scaling": "layer"},
                {"anchor_weight": "-0.5"}, {"return_uniform_frac": "1.5"}, {"generated_command_frac": "-0.1"}):
        with pytest.raises(PolicygenError):
            GoGePo(make_config(GoGePoConfig, None, bad), env_info(ENV), 0)


def test_iterate_reports_metric_columns_and_fills_buffer():
    algo = tiny()
    eng = engine_for(algo)
    m = algo.iterate(eng)
    assert set(m) <= set(METRIC_COLUMNS)
    for key in ("train_return_mean", "train_return_max", "best_train_return", "command", "loss", "episodes"):
        assert key in m, key
    assert m["episodes"] == 4 and len(algo.buffer) == 4
    assert m["command"] == 1.0  # first command before any data
    expected = m["best_train_return"] + 0.05 * (algo.ret_max - algo.ret_min)
    m2 = algo.iterate(eng)
    assert math.isclose(m2["command"], expected)
    assert m2["best_train_return"] >= m["best_train_return"]
    assert np.isfinite(m2["loss"])
    theta, command = algo.eval_policy()
    assert theta.shape == (algo.spec.num_params,) and command == m2["best_train_return"]
    assert algo.env_steps == eng.env_steps > 0  # what generated_command_from is compared with
    torch.testing.assert_close(theta, algo.generate([command])[0])  # no noise at evaluation


def test_command_changes_generated_policy_and_drive_modes():
    algo = tiny(preset="paper", policies_per_iteration=2)
    a, b = algo.generate([0.0, 900.0])
    assert (a - b).abs().max() > 0
    algo._record(torch.zeros(2, algo.spec.num_params), np.array([10.0, 30.0]), np.array([10.0, 30.0]),
                 np.array([10, 30]), 1.0)
    assert algo.next_command() == 30.0 + 20.0  # paper: best + 20 raw
    scaled = tiny(drive=0.5)
    scaled._record(torch.zeros(2, scaled.spec.num_params), np.array([10.0, 30.0]), np.array([10.0, 30.0]),
                   np.array([10, 30]), 1.0)
    assert scaled.next_command() == 30.0 + 0.5 * 20.0  # fast: a fraction of the seen range
    torch.testing.assert_close(scaled.command_input([10.0, 30.0]), torch.tensor([[0.0], [1.0]]))


class FakeEngine:
    """Returns without an environment: R(theta) = 100 - |theta|, episode length 10."""

    def __init__(self):
        self.calls = []
        self.env_steps = 0  # counted as the real engines count it

    def evaluate(self, thetas, episodes=1, update_stats=False):
        self.calls.append(thetas.clone())
        r = (100 - thetas.norm(dim=1)).double().numpy()
        n = len(r)
        self.env_steps += 10 * n
        return RolloutResult(r, r, np.full(n, 10.0), 10 * n, np.zeros(n, dtype=bool))


def test_noise_free_policies_and_command_window():
    algo = tiny(noise_free_policies=1, command_window=4)
    eng = FakeEngine()
    algo.iterate(eng)
    thetas = eng.calls[-1]
    assert (thetas[1:] - thetas[0]).abs().max() > 0.05  # the others are perturbed
    algo._record(torch.zeros(1, algo.spec.num_params), np.array([500.0]), np.array([500.0]), np.ones(1), 1.0)
    assert algo.best_command() == 500.0
    algo._record(torch.zeros(4, algo.spec.num_params), np.full(4, 7.0), np.full(4, 7.0), np.ones(4), 1.0)
    assert algo.best_command() == 7.0 and algo.best_train == 500.0  # the lucky 500 left the window
    assert algo.eval_policy()[1] == 7.0


def test_noise_free_row_is_the_generator_output():
    algo = tiny(noise_free_policies=2, noise_free_share=1, evaluator_steps=0, generator_steps=0)
    eng = FakeEngine()
    expected = algo.generate([algo.next_command()])[0]
    algo.iterate(eng)
    assert torch.equal(eng.calls[-1][0], expected) and torch.equal(eng.calls[-1][1], expected)
    assert not torch.equal(eng.calls[-1][2], expected)


@pytest.mark.parametrize("preset, expected", [
    ("fast", ((16, 4), (8, 4), (4, 3), (2, 1))),  # at most 4, always one perturbed
    ("fast-explore", ((16, 4), (8, 2), (4, 1), (2, 1))),  # also at most a quarter: 3 in 4 explore
])
def test_noise_free_policies_stay_a_share_of_the_iteration(preset, expected):
    for n, free in expected:
        algo = tiny(preset, policies_per_iteration=n, evaluator_steps=0, generator_steps=0)
        eng = FakeEngine()
        algo.iterate(eng)
        thetas = eng.calls[-1]
        same = [(t - thetas[0]).abs().max() == 0 for t in thetas]
        assert sum(same) == free and all(same[:free]), (n, same)


def test_spread_noise_free_policies_cover_the_seen_range():
    algo = tiny(noise_free_policies=3, noise_free_share=1, spread_noise_free="true", evaluator_steps=0,
                generator_steps=0)
    eng = FakeEngine()
    algo.iterate(eng)  # no returns seen yet: every noise-free policy at the command
    assert torch.equal(eng.calls[-1][1], eng.calls[-1][0])
    lo, hi = algo.seen_return_range()
    command = algo.next_command()
    asked, generate = [], algo.generate
    def recording(cmds):
        out = generate(cmds)
        asked.append((np.asarray(cmds, dtype=float), out))
        return out

    algo.generate = recording
    algo.iterate(eng)
    cmds, made = asked[0]
    assert len(cmds) == 3 and cmds[0] == command and np.all((cmds[1:] >= lo) & (cmds[1:] <= hi)), (cmds, lo, hi)
    thetas = eng.calls[-1]
    assert torch.equal(thetas[:3], made)  # noise-free: exactly G at those commands
    assert (thetas[3:] - thetas[0]).abs().max() > 0.05  # the rest perturb G(command)
    stored = algo.buffer.gather(algo.buffer.newest_indices(len(thetas)))["command"][:, 0].double().numpy()
    assert all(np.isclose(stored, c, rtol=1e-5).any() for c in cmds)  # each policy stored with its command


def test_evaluator_heads_train_apart_predict_their_mean_and_round_trip():
    algo = tiny(evaluator_heads=3)
    eng = FakeEngine()
    for _ in range(3):
        algo.iterate(eng)
    heads = algo._heads()
    assert len(heads) == 3
    thetas = algo.buffer.gather(algo.buffer.newest_indices(4))["theta"]
    f = algo.evaluator.fingerprint(thetas)
    each = torch.stack([h(f).squeeze(-1) for h in heads]).detach()
    assert (each[0] - each[1]).abs().max() > 1e-4  # own init and own draws: the heads differ
    # compared in V's standardised units: float32 sums round differently by CPU, and v_loc + v_scale * v cancels
    standardised = (algo.predict_returns(thetas) - algo.v_loc) / algo.v_scale
    assert np.allclose(standardised, each.double().mean(0).numpy(), rtol=1e-5, atol=1e-6)
    again = tiny(evaluator_heads=3, seed=1)
    again.load_state_dict(algo.state_dict())
    assert np.allclose(again.predict_returns(thetas), algo.predict_returns(thetas))
    with pytest.raises(PolicygenError, match="evaluator_heads"):
        tiny(evaluator_heads=0)


def test_spread_perturbed_policies_explore_around_g_across_the_seen_range():
    algo = tiny(noise_free_policies=1, spread_perturbed=0.5, policies_per_iteration=5, steps_per_iteration=0,
                evaluator_steps=0, generator_steps=0)
    eng = FakeEngine()
    algo.iterate(eng)  # no returns seen yet: every policy around G(command)
    lo, hi = algo.seen_return_range()
    command = algo.next_command()
    asked, generate = [], algo.generate
    algo.generate = lambda cmds: asked.append(np.asarray(cmds, dtype=float)) or generate(cmds)
    algo.iterate(eng)
    assert asked[0].tolist() == [command]
    spread = asked[1]  # the last 4 * 0.5 = 2 perturbed policies
    assert len(spread) == 2 and np.all((spread >= lo) & (spread <= hi)) and not np.any(spread == command)
    thetas = eng.calls[-1]
    near = lambda theta, cmds: (theta - generate(cmds)[0]).abs().max()  # noqa: E731
    assert near(thetas[3], spread[:1]) < near(thetas[3], [command])  # perturbed around G(spread command)
    stored = algo.buffer.gather(algo.buffer.newest_indices(5))["command"][:, 0].double().numpy()
    assert all(np.isclose(stored, c, rtol=1e-5).any() for c in spread)
    with pytest.raises(PolicygenError, match="spread_perturbed"):
        tiny(spread_perturbed=1.5)


def test_generated_commands_span_the_range_plus_drive():
    algo = tiny(generated_command_frac=0.5, batch_size=40)
    algo._record(torch.zeros(3, algo.spec.num_params), np.array([10.0, 50.0, 110.0]), np.zeros(3), np.ones(3), 1)
    r, achieved_by = algo._generator_commands()
    drive = 0.05 * 100
    assert len(r) == 40 and achieved_by.shape == (20, algo.spec.num_params)
    buffer_part, generated = r[:20], r[20:]
    assert set(buffer_part.tolist()) <= {10.0, 50.0, 110.0}
    assert (generated >= 10 + drive).all() and (generated <= 110 + drive).all()
    assert generated.std() > 10  # spread over the range, not a constant


def test_generated_commands_start_after_the_set_env_steps():
    algo = tiny(generated_command_frac=0.5, generated_command_from=1000, batch_size=40)
    algo._record(torch.zeros(3, algo.spec.num_params), np.array([10.0, 50.0, 110.0]), np.zeros(3), np.ones(3), 1)
    algo.env_steps = 999  # as iterate() sets it from the engine
    r, _ = algo._generator_commands()
    assert set(r.tolist()) <= {10.0, 50.0, 110.0}  # buffer returns only
    algo.env_steps = 1000
    r, achieved_by = algo._generator_commands()
    assert len(achieved_by) == 20 and not set(r[20:].tolist()) <= {10.0, 50.0, 110.0}
    with pytest.raises(PolicygenError, match="generated_command_from"):
        tiny(generated_command_from=-1)


@pytest.mark.parametrize("frac", [0.0, 0.5])
def test_return_uniform_share_trains_the_generator_at_rare_middle_returns(frac):
    algo = tiny(return_uniform_frac=frac, batch_size=40)
    thetas = torch.randn(101, algo.spec.num_params)
    returns = np.array([5.0] * 50 + [50.0] + [100.0] * 50)  # the middle return is the oldest but one
    algo._record(thetas, returns, returns, np.ones(101), 1)
    r = torch.cat([algo._generator_commands()[0] for _ in range(50)])
    middle = float((r == 50.0).double().mean())
    # recency draws the one middle policy ~0.5% of the time; half the batch even over 3 bins gives ~1/6
    assert (middle > 0.12) == (frac > 0), middle
    r, achieved_by = algo._generator_commands()
    by_return = {float(v): i for i, v in enumerate(returns)}
    anchored = achieved_by[r == 50.0]  # the anchor pulls G(50) towards the policy that earned 50
    torch.testing.assert_close(anchored, thetas[by_return[50.0]].expand_as(anchored), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("frac", [0.0, 0.5])
def test_evaluator_uniform_share_trains_the_evaluator_at_rare_middle_returns(frac):
    algo = tiny(evaluator_uniform_frac=frac, batch_size=40, evaluator_steps=50)
    returns = np.array([5.0] * 50 + [50.0] + [100.0] * 50)
    algo._record(torch.randn(101, algo.spec.num_params), returns, returns, np.ones(101), 1)
    drawn, draw = [], algo._draw
    algo._draw = lambda *a, **k: drawn.append(draw(*a, **k)) or drawn[-1]
    algo._update_evaluator()
    r = torch.cat([d["train_return"] for d in drawn])  # by recency the middle policy is ~1% of draws
    assert len(r) == 50 * 40 and ((r == 50.0).double().mean() > 0.05) == (frac > 0)
    with pytest.raises(PolicygenError, match="evaluator_uniform_frac"):
        tiny(evaluator_uniform_frac=1.5)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_anchor_gives_the_generator_a_gradient_where_the_evaluator_is_flat(weight, seed=0):
    algo = tiny(anchor_weight=weight, generator_steps=1)
    # one policy, three times: G(5) can match it exactly (three different ones leave a floor to the gap);
    # seeded, as the margin depends on it (gap ratio 0.70-0.82 over seeds 0-7; unseeded 3 policies: 0.79-0.99)
    good = torch.randn(1, algo.spec.num_params, generator=torch.Generator().manual_seed(seed)).expand(3, -1)
    algo._record(good, np.array([5.0, 5.0, 5.0]), np.zeros(3), np.ones(3), 1.0)
    with torch.no_grad():  # V predicts the target everywhere: its own loss gives G nothing to follow
        last = algo.evaluator.mlp[-1]
        last.weight.zero_()
        last.bias.copy_(algo.value_target([5.0]))

    def gap():  # G(5)'s probing actions against those of the policies that earned 5
        with torch.no_grad():
            fp = algo.evaluator.fingerprint(torch.cat([algo.generate([5.0]), good]))
        return float((fp[:1] - fp[1:]).pow(2).mean())

    before = gap()
    for _ in range(20):
        algo._update_generator()
    assert (gap() < 0.9 * before) == (weight > 0)


def test_target_rescale_preserves_evaluator_in_return_units():
    algo = tiny()
    thetas = torch.randn(5, algo.spec.num_params) * 0.1

    def raw():
        return torch.from_numpy(algo.predict_returns(thetas))

    algo._record(thetas[:2], np.array([5.0, 20.0]), np.array([5.0, 20.0]), np.array([5, 20]), 1.0)
    algo._rescale_targets()
    before, scale = raw(), (algo.v_loc, algo.v_scale)
    assert scale == (12.5, 7.5)  # mean and std of the buffered returns
    algo._record(thetas[2:], np.array([1.0, 500.0, 7.0]), np.zeros(3), np.ones(3), 1.0)
    algo._rescale_targets()
    assert (algo.v_loc, algo.v_scale) != scale
    torch.testing.assert_close(raw(), before, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(algo.value_target([algo.v_loc + algo.v_scale]), torch.tensor([1.0]))


def test_seen_range_and_bad_commands_are_clear_errors():
    algo = tiny()
    with pytest.raises(PolicygenError, match="no returns seen"):
        algo.seen_return_range()
    algo._record(torch.zeros(2, algo.spec.num_params), np.array([3.0, 9.0]), np.zeros(2), np.ones(2), 1.0)
    assert algo.seen_return_range() == (3.0, 9.0)
    with pytest.raises(PolicygenError, match="finite"):
        algo.generate([float("nan")])


def test_rebase_buffer_keeps_buffered_policies_acting_as_when_they_ran():
    algo = tiny(rebase_buffer=True, buffer_dtype="float32")
    eng = engine_for(algo)
    ran_under = (eng.obs_stats.mean.copy(), eng.obs_stats.std.copy())
    algo.iterate(eng)
    first = algo.buffer.thetas[:4].clone()  # as they ran, under ran_under
    algo.iterate(eng)
    now = (eng.obs_stats.mean, eng.obs_stats.std)
    assert not np.allclose(ran_under[1], now[1])  # the statistics moved
    served = algo.buffer.gather(torch.arange(4))["theta"]  # what V, G and the anchor are trained on
    raw = torch.as_tensor(np.random.default_rng(0).normal(size=(4, algo.spec.obs_dim)) * 2)
    acts = forward(algo.spec, served, ((raw - now[0]) / now[1]).float())
    assert torch.allclose(acts, forward(algo.spec, first, ((raw - ran_under[0]) / ran_under[1]).float()), atol=1e-5)
    assert not torch.allclose(acts, forward(algo.spec, first, ((raw - now[0]) / now[1]).float()), atol=1e-3)


@pytest.mark.parametrize("rebase", [False, True])
def test_state_dict_roundtrip_gives_same_policies_and_continuation(tmp_path, rebase):
    a = tiny(seed=3, rebase_buffer=rebase)
    ea = engine_for(a, seed=5)
    for _ in range(3):
        a.iterate(ea)
    save_state(tmp_path / "s.safetensors", {"algo": a.state_dict()}, kind="checkpoint")
    b = tiny(seed=99, rebase_buffer=rebase)  # different init and generator state: everything from the file
    b.load_state_dict(load_state(tmp_path / "s.safetensors", kind="checkpoint")["algo"])
    cmds = [0.0, 25.0, 1000.0]
    assert torch.equal(a.generate(cmds), b.generate(cmds))
    eb = engine_for(b, seed=5)
    eb.obs_stats.load_state_dict(ea.obs_stats.state_dict())
    ea.reseed(11)
    eb.reseed(11)
    ma, mb = a.iterate(ea), b.iterate(eb)
    assert ma == mb
    assert torch.equal(a.generate(cmds), b.generate(cmds))


def test_trainer_resume_is_exact(tmp_path, monkeypatch):
    rc = RunConfig(env_id=ENV, steps=1500, eval_every=500, eval_episodes=2, checkpoint_every=2, num_envs=8,
                   seed=1)
    full = start_run("gogepo", rc, out=str(tmp_path / "full"), overrides=TINY, quiet=True)
    real_iterate, calls = GoGePo.iterate, {"n": 0}

    def dying(self, engine):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # killed mid-run, after the checkpoint of iteration 4
        return real_iterate(self, engine)

    monkeypatch.setattr(GoGePo, "iterate", dying)
    with pytest.raises(KeyboardInterrupt):
        start_run("gogepo", rc, out=str(tmp_path / "cut"), overrides=TINY, quiet=True)
    monkeypatch.setattr(GoGePo, "iterate", real_iterate)
    resumed = resume_run(str(tmp_path / "cut"), quiet=True)
    assert resumed.summary["env_steps"] == full.summary["env_steps"]
    assert resumed.summary["final_eval_return"] == full.summary["final_eval_return"]
    pa, pb = load_run(str(tmp_path / "full")), load_run(str(tmp_path / "cut"))
    for command in (0.0, 30.0, 200.0):
        assert torch.equal(pa.policy(command).theta, pb.policy(command).theta)
    rows_a, rows_b = full.read_metrics(), resumed.read_metrics()
    assert [r["train_return_mean"] for r in rows_a] == [r["train_return_mean"] for r in rows_b]


def test_resume_refuses_a_config_edited_since_the_checkpoint(tmp_path, monkeypatch):
    import json

    rc = RunConfig(env_id=ENV, steps=1500, eval_every=500, eval_episodes=2, checkpoint_every=2, num_envs=8)
    real_iterate, calls = GoGePo.iterate, {"n": 0}

    def dying(self, engine):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_iterate(self, engine)

    monkeypatch.setattr(GoGePo, "iterate", dying)
    with pytest.raises(KeyboardInterrupt):
        start_run("gogepo", rc, out=str(tmp_path / "cut"), overrides=TINY, quiet=True)
    monkeypatch.setattr(GoGePo, "iterate", real_iterate)
    path = tmp_path / "cut" / "config.json"
    original = path.read_text()
    config = json.loads(original)
    config["algo"]["sigma"] = 0.5
    path.write_text(json.dumps(config))
    with pytest.raises(PolicygenError, match=r"algo\.sigma: 0\.1 -> 0\.5"):
        resume_run(str(tmp_path / "cut"), quiet=True)
    config["algo"]["sigma"], config["run"]["steps"] = 0.1, 2000  # training longer is allowed
    path.write_text(json.dumps(config))
    assert resume_run(str(tmp_path / "cut"), quiet=True).summary["env_steps"] >= 2000


@pytest.mark.slow
def test_fast_preset_learns_inverted_pendulum(tmp_path):
    # seed 2 is pinned: at 30k steps the fast preset is not yet stable on every seed (at 100k it ends at 1000
    # on seeds 0-2, bench/results/gogepo-ip.md); this seed reaches 1000 at ~15k and ends there.
    rc = RunConfig(env_id=ENV, steps=30_000, eval_every=5_000, seed=2, checkpoint_every=1000)
    run = start_run("gogepo", rc, out=str(tmp_path / "run"), quiet=True)
    rows = [r for r in run.read_metrics() if r["eval_return"]]
    best = max(float(r["eval_return"]) for r in rows)
    assert best >= 900, [(r["env_steps"], r["eval_return"]) for r in rows]
    # the generator follows the command: a low command gives a worse policy than the best command
    loaded = load_run(str(tmp_path / "run"))
    lo, hi = loaded.algo.seen_return_range()
    eng = RolloutEngine(ENV, loaded.algo.spec, num_envs=16, seed=123)
    eng.obs_stats = loaded.obs_stats
    achieved = [eng.evaluate(loaded.policy(c).theta[None], episodes=5, count_steps=False).returns[0]
                for c in (lo, hi)]
    assert achieved[1] > achieved[0] + 100, achieved
