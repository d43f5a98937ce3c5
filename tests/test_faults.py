"""Environments that misbehave (raise, NaN or inf, hang): the policy's episode is marked failed, nothing
of it reaches a buffer or the observation statistics, the run counts it and goes on, and stops with one
clear line once failures exceed the limit."""

from __future__ import annotations

import csv
import math
import time

import numpy as np
import pytest
import torch
from conftest import walk_state
from test_engine import SPEC, constant_policies, expected

from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import resume_run, start_run
from policygen.errors import EnvFault
from policygen.rollout import RolloutEngine
from policygen.runs.rundir import RunDir

FAULTY = "policygen-tests/Faulty-v0"
ACTIONS = [-0.6, 0.9, 0.1, 0.7, -0.2]  # 0.9 and 0.7 (above 0.5) misbehave at their third step
BAD = np.array([a > 0.5 for a in ACTIONS])


def engine(fault: str, tolerate: bool = True, **kw) -> RolloutEngine:
    return RolloutEngine(FAULTY, SPEC, num_envs=2, backend="gymnasium", tolerate_faults=tolerate,
                         env_kwargs={"fault": fault, **kw.pop("env", {})}, **kw)


@pytest.mark.parametrize("fault,procs", [("raise", 1), ("nan_obs", 1), ("inf_reward", 1), ("raise", 2)])
def test_faulty_episodes_are_marked_and_the_others_are_exact(fault, procs):
    eng = engine(fault, num_threads=procs)  # procs 2: slot 1's faults happen in a worker process
    res = eng.evaluate(constant_policies(ACTIONS), update_stats=True, record=True)
    np.testing.assert_array_equal(res.failed, BAD)
    assert np.isnan(res.returns[BAD]).all() and np.isnan(res.train_returns[BAD]).all()
    for a, r, n in zip(np.array(ACTIONS)[~BAD], res.returns[~BAD], res.lengths[~BAD], strict=True):
        assert (r, n) == pytest.approx(expected(a))
    assert eng.failures == BAD.sum() and "for policy" in eng.last_fault
    # the statistics hold the good episodes' observations and the bad ones' finite steps before the fault
    assert eng.obs_stats.count == res.lengths.sum() and np.isfinite(eng.obs_stats.mean).all()
    assert np.isfinite(eng.obs_stats.std).all()
    again = eng.evaluate(constant_policies(ACTIONS[:1]))  # the slots, rebuilt where needed, work on
    assert again.returns[0] == pytest.approx(expected(ACTIONS[0])[0])


@pytest.mark.parametrize("fault,words", [("raise", "raised RuntimeError while stepping: simulated"),
                                         ("nan_obs", "non-finite reward"), ("inf_reward", "non-finite reward")])
def test_a_strict_engine_gives_one_clear_error(fault, words):
    with pytest.raises(EnvFault, match=words):
        engine(fault, tolerate=False).evaluate(constant_policies(ACTIONS))


@pytest.mark.parametrize("procs", [1, 2])
def test_a_hanging_env_is_cut_off_by_the_step_timeout(procs):
    eng = engine("hang", step_timeout=0.3, env={"hang_s": 30.0}, num_threads=procs)
    t0 = time.perf_counter()
    res = eng.evaluate(constant_policies(ACTIONS))
    assert time.perf_counter() - t0 < 5.0
    np.testing.assert_array_equal(res.failed, BAD)
    assert "step_timeout=0.3" in eng.last_fault


def test_step_timeout_off_lets_a_slow_step_finish():
    eng = engine("hang", step_timeout=0.0, env={"hang_s": 0.2})
    assert not eng.evaluate(constant_policies([0.9])).failed.any()


def _rows(run) -> list[dict]:
    with open(run.path / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo,over", [
    ("ars", {}),
    ("gogepo", {"hidden": "8,8", "chunk": "4", "generator_hidden": "16,16", "evaluator_hidden": "16,16",
                "n_probe": "4", "batch_size": "8"}),
    ("udrlpg", {"policy_hidden": "8,8", "chunk": "4", "embed_dim": "4", "generator_hidden": "16,16",
                "batch_size": "8", "hand_set_range": "false"}),
])
def test_training_counts_failures_keeps_them_out_and_goes_on(tmp_path, algo, over):
    rc = RunConfig(env_id=FAULTY, steps=600, seed=0, backend="gymnasium", num_envs=4, eval_every=200,
                   eval_episodes=4, checkpoint_every=3, env_kwargs={"fault": "nan_obs", "above": None, "p": 0.2})
    run = start_run(algo, rc, str(tmp_path / algo), overrides=over, quiet=True)
    rows = _rows(run)
    assert int(rows[-1]["failures"]) > 0 and run.summary["failures"] == int(rows[-1]["failures"])
    assert [int(r["failures"]) for r in rows] == sorted(int(r["failures"]) for r in rows)
    state = run.load_checkpoint()
    assert np.isfinite(state["obs_stats"]["mean"]).all()
    for key, value in walk_state(state["algo"]):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.isfinite(value).all(), key  # buffers, networks, optimiser: no NaN stored anywhere
    assert math.isfinite(run.summary["final_eval_return"])


def test_too_many_failures_stop_the_run_with_one_line_and_it_stays_resumable(tmp_path):
    rc = RunConfig(env_id=FAULTY, steps=2000, seed=0, backend="gymnasium", num_envs=4, eval_every=1000,
                   eval_episodes=2, checkpoint_every=2, max_failures=3,
                   env_kwargs={"fault": "raise", "above": None, "p": 0.5})
    with pytest.raises(EnvFault, match=r"over max_failures=3; the last: .*raised RuntimeError.*--resume"):
        start_run("ars", rc, str(tmp_path / "r"), quiet=True)
    run = RunDir.open(tmp_path / "r")
    assert run.status == "stopped" and not (run.path / "summary.json").exists()
    with pytest.raises(EnvFault, match="max_failures=3"):  # resumable: same faults, same stop, no lock left
        resume_run(str(run.path), quiet=True)
