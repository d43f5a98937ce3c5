import csv

import numpy as np
import pytest
import torch

from policygen.algorithms.ars import ARS, ARSStrategy
from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import resume_run, start_run
from policygen.errors import PolicygenError


def test_ask_tell_improves_a_quadratic():
    target = torch.linspace(-1, 1, 6)
    s = ARSStrategy(torch.zeros(6), n_directions=8, top=4, step_size=0.05, noise=0.05, seed=0)
    start = float(((s.theta - target) ** 2).sum())
    for _ in range(200):
        thetas = s.ask()
        s.tell(-((thetas - target) ** 2).sum(dim=1).numpy())
    assert float(((s.theta - target) ** 2).sum()) < 0.05 * start


def test_tell_refuses_wrong_or_non_finite_returns():
    s = ARSStrategy(torch.zeros(3), 2, 1, 0.1, 0.1, 0)
    s.ask()
    with pytest.raises(PolicygenError, match="needs 4 returns"):
        s.tell(np.zeros(3))
    with pytest.raises(PolicygenError, match="non-finite"):
        s.tell(np.array([0, 1, np.nan, 0]))
    with pytest.raises(PolicygenError, match="top-b"):
        ARSStrategy(torch.zeros(3), 2, 3, 0.1, 0.1, 0)


class Killed(Exception):
    pass


def _rows(run):
    with open(run.path / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


def _ip(seed=0, steps=15000, backend="gymnasium"):
    return RunConfig(env_id="InvertedPendulum-v5", steps=steps, seed=seed, backend=backend, num_envs=16,
                     eval_every=2000, eval_episodes=3, checkpoint_every=4)


def test_same_seed_same_numbers(tmp_path):
    a = start_run("ars", _ip(), str(tmp_path / "a"), quiet=True)
    b = start_run("ars", _ip(), str(tmp_path / "b"), quiet=True)
    assert _rows(a) == _rows(b)
    c = start_run("ars", _ip(seed=1), str(tmp_path / "c"), quiet=True)
    assert _rows(a) != _rows(c)


def test_evaluation_frequency_does_not_change_training(tmp_path):
    train_cols = ("env_steps", "iteration", "train_return_mean", "train_return_max", "best_train_return")
    often = start_run("ars", _ip(steps=6000), str(tmp_path / "often"), quiet=True)
    rare = _ip(steps=6000)
    rare.eval_every = 10**6
    rare = start_run("ars", rare, str(tmp_path / "rare"), quiet=True)
    assert [[r[k] for k in train_cols] for r in _rows(often)] == [[r[k] for k in train_cols] for r in _rows(rare)]
    assert sum(bool(r["eval_return"]) for r in _rows(often)) > sum(bool(r["eval_return"]) for r in _rows(rare))


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, backend):
    if backend == "envpool":
        pytest.importorskip("envpool", reason="the envpool extra is not installed (scripts/setup.sh installs it)")
    full = start_run("ars", _ip(backend=backend), str(tmp_path / "full"), quiet=True)
    calls = {"n": 0}
    real = ARS.iterate

    def dying(self, engine):
        calls["n"] += 1
        if calls["n"] == 7:  # after the checkpoint at iteration 4
            raise Killed
        return real(self, engine)

    monkeypatch.setattr(ARS, "iterate", dying)
    with pytest.raises(Killed):
        start_run("ars", _ip(backend=backend), str(tmp_path / "killed"), quiet=True)
    monkeypatch.setattr(ARS, "iterate", real)
    assert calls["n"] == 7 and full.summary["iterations"] > 7
    resumed = resume_run(str(tmp_path / "killed"), quiet=True)
    assert _rows(resumed) == _rows(full)
    assert resumed.summary["final_eval_return"] == full.summary["final_eval_return"]


@pytest.mark.slow
def test_ars_learns_inverted_pendulum_to_1000(tmp_path):
    for seed in range(3):
        run = start_run("ars", RunConfig(env_id="InvertedPendulum-v5", steps=30_000, seed=seed, eval_every=2000),
                        str(tmp_path / f"s{seed}"), quiet=True)
        assert run.summary["best_eval_return"] >= 1000, (seed, run.summary)
