"""MetaWorld for Make-An-Agent: the success signal through the engine, EnvPool-only env ids, behaviour
cloning, prompt noise and the per-task report (a stub env, and short real MetaWorld episodes)."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygen.algorithms.bc import BCConfig, bc_pairs, train_bc
from policygen.algorithms.make_an_agent.collect import _prompt, rollout_records
from policygen.analysis.agent_report import agent_report, noisy_prompts, report_markdown, success_figures
from policygen.buffers.policy_dataset import PolicyDataset, PromptLayout
from policygen.envs.make import env_info, make_gymnasium
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.rollout.backends import envpool_has, resolve_backend
from policygen.rollout.engine import RolloutEngine

REACH = "MetaWorld/Reach-v3"
needs_mw = pytest.mark.skipif(not envpool_has(REACH), reason="envpool with MetaWorld is not installed")
LINEAR = MLPSpec(39, 4, (), "tanh", "clip", (1.0,) * 4, bias=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class SuccessStub(gym.Env):
    """10-step episodes; ``info["success"]`` turns 1 from step 4 on when the action is positive."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0]), {}

    def step(self, action):
        self.t += 1
        ok = float(action[0]) > 0 and self.t >= 4
        return np.array([self.t / 10, 1.0]), 1.0, self.t >= 10, False, {"success": float(ok)}


gym.register("PolicygenSuccessStub-v0", entry_point=SuccessStub)
STUB_SPEC = MLPSpec(2, 1, (), "tanh", "clip", (1.0,), bias=True)


def _const(a: float) -> torch.Tensor:
    return torch.tensor([0.0, 0.0, a])  # W (1, 2) zero, bias a: the constant action a


def test_engine_records_episode_success_and_per_step_flags():
    eng = RolloutEngine("PolicygenSuccessStub-v0", STUB_SPEC, num_envs=2, backend="gymnasium", normalize_obs=False)
    res = eng.evaluate(torch.stack([_const(0.5), _const(-0.5)]), episodes=2, record=True)
    np.testing.assert_array_equal(res.successes, [1.0, 0.0])
    assert res.episode_successes.shape == (2, 2) and res.episode_successes[0].all()
    flags = res.trajectories[0]["success"]
    assert flags.dtype == bool and flags.shape == (10,) and np.flatnonzero(flags)[0] == 3  # after action 3 = step 4
    assert not res.trajectories[2]["success"].any()


def test_no_success_signal_means_none(stub_id):
    eng = RolloutEngine(stub_id, STUB_SPEC, num_envs=2, backend="gymnasium", normalize_obs=False)
    res = eng.evaluate(torch.stack([_const(0.5)]), record=True)
    assert res.successes is None and res.episode_successes is None and "success" not in res.trajectories[0]


def test_outcome_states_start_after_the_first_success_step():
    layout = PromptLayout(steps=6, state_every=3, outcome_states=2)
    obs = np.arange(10, dtype=float)[:, None] * np.ones((1, 2))
    step_ok = np.zeros(10, bool)
    step_ok[3:] = True  # the step from state 3 reports success: state 4 is the first succeeded one
    p = _prompt(layout, {"obs": obs, "actions": np.ones((10, 1)), "success": step_ok})
    np.testing.assert_array_equal(p["outcome_obs"][:, 0], [4, 5])
    assert p["success"] == 1
    last = np.zeros(10, bool)
    last[-1] = True  # success on the very last step: no state after it, the record still succeeded
    q = _prompt(layout, {"obs": obs, "actions": np.ones((10, 1)), "success": last})
    assert q["success"] == 1 and np.array_equal(q["outcome_obs"][:, 0], [8, 9])
    r = _prompt(layout, {"obs": obs, "actions": np.ones((10, 1)), "success": np.zeros(10, bool)})
    assert r["success"] == 0


def _reach_expert() -> torch.Tensor:
    """a = clip(10 (goal - hand)): obs[0:3] is the hand, obs[36:39] the goal (goal-observable)."""
    w = np.zeros((4, 39))
    w[:3, 36:39], w[:3, 0:3] = 10 * np.eye(3), -10 * np.eye(3)
    return torch.tensor(np.concatenate([w.ravel(), np.zeros(4)]), dtype=torch.float32)


@needs_mw
def test_metaworld_env_info_and_expert_succeeds_through_envpool():
    info = env_info(REACH)
    assert (info.obs_dim, info.act_dim, info.max_episode_steps, info.success_signal) == (39, 4, 500, True)
    eng = RolloutEngine(REACH, LINEAR, num_envs=2, seed=0, normalize_obs=False, num_threads=1,
                        env_kwargs={"max_episode_steps": 60})
    res = eng.evaluate(torch.stack([_reach_expert(), torch.zeros(LINEAR.num_params)]), episodes=2)
    np.testing.assert_array_equal(res.successes, [1.0, 0.0])
    assert eng.backend_name == "envpool" and res.lengths[0] == 60


@needs_mw
def test_metaworld_bad_ids_are_one_line():
    for bad, want in (("MetaWorld/Rech-v3", "did you mean MetaWorld/Reach-v3"),):
        with pytest.raises(PolicygenError, match=want) as e:
            env_info(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(PolicygenError, match="only through EnvPool") as e:
        resolve_backend("gymnasium", REACH)
    assert "\n" not in str(e.value)
    with pytest.raises(PolicygenError, match="only through EnvPool"):
        make_gymnasium(REACH)
    with pytest.raises(PolicygenError, match="Discrete action space"):
        env_info("CartPole-v1")


def test_behaviour_cloning_fits_a_linear_expert():
    rng = np.random.default_rng(0)
    layout = PromptLayout(steps=30, state_every=3, outcome_states=1)
    obs = rng.normal(size=(8, 10, 3))
    w = np.array([[0.5, -0.3, 0.2]])
    acts = np.zeros((8, 30, 1), np.float32)
    acts[:, ::3] = np.tanh(obs @ w.T)
    lens = np.full(8, 30)
    lens[0] = 4  # episode 0 lasted 4 steps: its states 2.. are padding and must be left out
    states, actions = bc_pairs({"prompt_obs": obs, "prompt_actions": acts, "prompt_len": lens}, layout)
    assert len(states) == 7 * 10 + 2
    policy, mse = train_bc(states, actions, (1.0,), BCConfig(steps=600), seed=0)
    test = rng.normal(size=(50, 3))
    err = np.abs(policy(test) - np.tanh(test @ w.T)).mean()
    assert mse < 1e-3 and err < 0.05, (mse, err)
    with pytest.raises(PolicygenError, match="NaN"):
        bc_pairs({"prompt_obs": obs * np.nan, "prompt_actions": acts}, layout)


def test_success_figures_and_prompt_noise():
    f = success_figures(np.array([1.0, 0.2, 1.0, 0.6, 0.0, 0.4]))
    assert f["best"] == 1.0 and f["top5"] == pytest.approx((1 + 1 + 0.6 + 0.4 + 0.2) / 5)
    assert f["full_share"] == pytest.approx(2 / 6)
    p = {"prompt_obs": np.zeros((2, 3, 2), np.float32), "outcome_obs": np.zeros((2, 1, 2), np.float32),
         "prompt_actions": np.full((2, 6, 1), 0.99, np.float32)}
    assert noisy_prompts(p, 0.0, np.ones(2), np.ones(1), 0) is p
    q = noisy_prompts(p, 0.5, np.array([1.0, 0.0]), np.ones(1), 0)
    assert q["prompt_obs"][..., 0].std() > 0.2 and (q["prompt_obs"][..., 1] == 0).all()  # scaled per dim
    assert np.abs(q["prompt_actions"]).max() <= 1.0 and not np.array_equal(q["prompt_actions"], p["prompt_actions"])


@needs_mw
def test_report_on_a_tiny_metaworld_data_set(tmp_path):
    """Data: the reach expert and random linear policies, one 500-step episode each; stages of a few steps.
    The report must find the expert in the training data (success 1) and cover both noise levels."""
    from policygen.algorithms.make_an_agent.generate import write_prompts
    from policygen.algorithms.make_an_agent.train import train_make_an_agent

    layout = PromptLayout()
    gen = torch.Generator().manual_seed(0)
    thetas = torch.cat([_reach_expert()[None], 0.3 * torch.randn(5, LINEAR.num_params, generator=gen)]).numpy()
    zeros, ones = np.zeros(39), np.ones(39)
    rec, info = rollout_records(REACH, LINEAR, thetas, zeros, ones, layout, seed=0)
    assert rec["success"][0] == 1 and rec["success"].shape == (6,)
    ds = PolicyDataset.create_or_open(tmp_path / "ds", LINEAR, layout, "first_success")
    ds.append(rec, [{**r, "task": REACH, "source": "test"} for r in info])
    steps = {k: "30" for k in ("ae_steps", "emb_steps", "diff_steps", "checkpoint_every")}
    train_make_an_agent(str(tmp_path / "ds"), str(tmp_path / "run"), steps, seed=0)
    prompts = {k: rec[k][:2] for k in ("prompt_obs", "prompt_actions", "outcome_obs", "returns", "success")}
    write_prompts(tmp_path / "p.safetensors", prompts, layout, REACH)
    rep = agent_report(str(tmp_path / "run"), [str(tmp_path / "p.safetensors")], n=2, episodes=1,
                       noise=(0.0, 0.1), bc=1, data_candidates=2, bc_cfg=BCConfig(steps=20))
    row = rep["tasks"][REACH]
    assert row["seen"] and row["prompts"] == 2 and row["prompt_success"] == float(rec["success"][:2].mean())
    assert row["training_data"]["best"] == 1.0
    assert set(row["noise"]) == {"0", "0.1"} and row["noise"]["0"]["generated"]["n"] == 2
    assert rep["summary"]["seen"]["training_data"]["best"] == 1.0
    md = report_markdown(rep)
    assert md.count(f"| {REACH} | yes |") == 2
    json.dumps(rep)  # JSON-ready


@needs_mw
def test_evaluate_cli_reports_success_rate(tmp_path, capsys):
    from policygen.cli import main
    from policygen.policies.io import save_policy
    from policygen.policies.standalone import Policy

    path = tmp_path / "expert.safetensors"
    save_policy(Policy(LINEAR, _reach_expert(), np.zeros(39), np.ones(39), {"env_id": REACH}), path)
    assert main(["evaluate", str(path), "--episodes", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success_rate"] == 1.0 and out["successes"] == [1, 1]
