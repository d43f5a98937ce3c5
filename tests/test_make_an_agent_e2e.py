"""Make-An-Agent end to end on InvertedPendulum, through the command line: ARS checkpoints -> collect ->
train make-an-agent -> generate --prompt -> evaluate; bad prompts and a killed collect."""

import json

import numpy as np
import pytest
import torch

from policygen.algorithms.make_an_agent.generate import write_prompts
from policygen.buffers.policy_dataset import PolicyDataset, PromptLayout
from policygen.cli import main
from policygen.envs.stats import RunningStats
from policygen.policies.flat_mlp import init_thetas
from policygen.policies.io import load_policy
from policygen.rollout.engine import RolloutEngine

ENV = "InvertedPendulum-v5"
SMALL = ["--set", "ae_steps=300", "--set", "emb_steps=200", "--set", "diff_steps=800", "--set", "checkpoint_every=200"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("maa")
    torch.set_num_threads(1)
    assert main(["train", "ars", "--env", ENV, "--steps", "8000", "--snapshots", "4", "--out", str(root / "ars"),
                 "--quiet", "--backend", "gymnasium", "--num-envs", "16"]) == 0
    assert main(["collect", str(root / "ars"), "--out", str(root / "data"), "--copies", "5",
                 "--backend", "gymnasium"]) == 0
    assert main(["train", "make-an-agent", "--dataset", str(root / "data"), "--out", str(root / "maa"),
                 "--quiet", *SMALL]) == 0
    return root


def _returns(spec, thetas, mean, std):
    engine = RolloutEngine(ENV, spec, num_envs=16, backend="gymnasium", seed=5)
    engine.obs_stats = RunningStats.from_mean_std(mean, std)
    try:
        return engine.evaluate(torch.as_tensor(thetas), episodes=2, count_steps=False).returns
    finally:
        engine.close()


@pytest.mark.slow
def test_generated_policies_load_run_and_beat_random_ones(pipeline, capsys):
    rec, _ = PolicyDataset.open(pipeline / "data").load()
    assert rec["returns"].max() > 3 * rec["returns"].min()  # varied quality on purpose
    code, out, err = cli(capsys, "generate", pipeline / "maa", "--prompt", pipeline / "data", "--n", 12,
                         "--out", pipeline / "gen")
    assert code == 0, err
    index = json.loads((pipeline / "gen" / "index.json").read_text())
    policies = [load_policy(pipeline / "gen" / e["file"]) for e in index["policies"]]
    assert len(policies) == 12 and policies[0].meta["env_id"] == ENV
    code, out, err = cli(capsys, "evaluate", pipeline / "gen" / "policy-0000.safetensors", "--episodes", 2,
                         "--backend", "gymnasium")
    assert code == 0 and len(json.loads(out)["returns"]) == 2, err
    spec, mean, std = policies[0].spec, policies[0].obs_mean, policies[0].obs_std
    generated = _returns(spec, torch.stack([p.theta for p in policies]), mean, std)
    random = _returns(spec, init_thetas(spec, 12, torch.Generator().manual_seed(0)), mean, std)
    assert generated.mean() > 2 * random.mean() + 5, (generated, random)


@pytest.mark.slow
def test_prompt_command_records_a_prompt_that_generates(pipeline, capsys):
    code, out, err = cli(capsys, "prompt", pipeline / "gen" / "policy-0001.safetensors", "--episodes", 2,
                         "--for-run", pipeline / "maa", "--out", pipeline / "p.safetensors", "--backend", "gymnasium")
    assert code == 0 and len(json.loads(out)["returns"]) == 2, err
    code, out, err = cli(capsys, "generate", pipeline / "maa", "--prompt", pipeline / "p.safetensors", "--n", 3,
                         "--out", pipeline / "gen2")
    assert code == 0 and json.loads(out)["prompts"] == 2, err


def _bad_prompt(path, n=2, obs=4, act=1, nan=False):
    lay = PromptLayout()
    p = {"prompt_obs": np.zeros((n, lay.n_states, obs)), "prompt_actions": np.zeros((n, lay.steps, act)),
         "outcome_obs": np.zeros((n, lay.outcome_states, obs))}
    if nan:
        p["prompt_obs"][0, 0, 0] = np.nan
    return write_prompts(path, p, lay, ENV)


@pytest.mark.slow
@pytest.mark.parametrize("kind, message", [
    ({"obs": 5}, "prompt_obs has observation size 5 but the run's policies take 4"),
    ({"act": 2}, "prompt_actions has action size 2 but the run's policies give 1"),
    ({"n": 0}, "holds no prompt trajectory (empty)"),
    ({"nan": True}, "prompt_obs contains NaN or inf values"),
])
def test_bad_prompts_are_one_clear_line_and_write_nothing(pipeline, capsys, tmp_path, kind, message):
    prompt = _bad_prompt(tmp_path / "bad.safetensors", **kind)
    code, _, err = cli(capsys, "generate", pipeline / "maa", "--prompt", prompt, "--n", 2, "--out", tmp_path / "g")
    assert code == 2 and err.startswith("policygen: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "g").exists()


@pytest.mark.slow
def test_a_data_set_takes_one_policy_spec(pipeline, capsys, tmp_path):
    other = tmp_path / "ars16"
    assert main(["train", "ars", "--env", ENV, "--steps", "500", "--set", "hidden=4", "--out", str(other),
                 "--quiet", "--backend", "gymnasium", "--num-envs", "16"]) == 0
    data = tmp_path / "data"
    assert cli(capsys, "collect", pipeline / "ars", "--out", data, "--copies", 1, "--backend", "gymnasium")[0] == 0
    before = PolicyDataset.open(data).shards()
    code, _, err = cli(capsys, "collect", other, "--out", data, "--copies", 1, "--backend", "gymnasium")
    assert code == 2 and "a data set holds one policy spec" in err and err.count("\n") == 1, err
    assert PolicyDataset.open(data).shards() == before


@pytest.mark.slow
def test_a_killed_collect_keeps_its_shards_and_continues(pipeline, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = PolicyDataset.append

    def dying(self, records, info):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after two checkpoints were written
        calls["n"] += 1
        return real(self, records, info)

    monkeypatch.setattr(PolicyDataset, "append", dying)
    argv = ["collect", str(pipeline / "ars"), "--out", str(tmp_path / "data"), "--copies", "5", "--backend",
            "gymnasium"]
    assert main(argv) == 130
    assert len(PolicyDataset.open(tmp_path / "data").shards()) == 2
    monkeypatch.setattr(PolicyDataset, "append", real)
    assert main(argv) == 0
    rerun, _ = PolicyDataset.open(tmp_path / "data").load()
    whole, _ = PolicyDataset.open(pipeline / "data").load()
    np.testing.assert_array_equal(rerun["returns"], whole["returns"])  # the same records as one whole run
    np.testing.assert_array_equal(rerun["theta"], whole["theta"])


@pytest.mark.slow
def test_a_moved_run_and_a_copied_data_set_are_not_collected_twice(pipeline, capsys, tmp_path):
    import shutil

    shutil.copytree(pipeline / "ars", tmp_path / "moved")
    shutil.copytree(pipeline / "data", tmp_path / "data")
    code, out, _ = cli(capsys, "collect", tmp_path / "moved", "--out", tmp_path / "data", "--copies", 5, "--backend",
                       "gymnasium")
    assert code == 0 and json.loads(out)["records_written"] == 0, out
    again, info = PolicyDataset.open(tmp_path / "data").load()
    whole, _ = PolicyDataset.open(pipeline / "data").load()
    np.testing.assert_array_equal(again["theta"], whole["theta"])
    assert {r["checkpoint"].split("#")[0] for r in info} == {str((pipeline / "ars").resolve())}
