"""The step-based baselines (SB3's TD3/SAC/DDPG, sb3-contrib's ARS, classic UDRL) behind policygen train."""

from __future__ import annotations

import csv
import importlib.util
import json

import gymnasium as gym
import numpy as np
import pytest

from policygen.algorithms import steploop
from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import resume_run
from policygen.cli import main
from policygen.runs.rundir import METRIC_COLUMNS

# the sb3 extra is part of the default setup (scripts/setup.sh); without it only the SB3 cases skip
needs_sb3 = pytest.mark.skipif(importlib.util.find_spec("stable_baselines3") is None
                               or importlib.util.find_spec("sb3_contrib") is None,
                               reason="pip install 'policygen[sb3]' (scripts/setup.sh installs it)")
SB3 = [pytest.param(a, marks=needs_sb3) for a in ("td3", "sac", "ddpg", "ars-sb3")]
OFF = ["hidden=16,16", "batch_size=32", "train_freq=4"]  # a gradient phase every 4 steps: 4x fewer, same code paths
TINY = {"td3": OFF, "sac": OFF, "ddpg": OFF, "ars-sb3": [],
        "udrl": ["hidden=16,16", "n_warmup_episodes=5", "n_updates_per_iter=5", "n_episodes_per_iter=5"]}
SUMMARY_KEYS = {"algorithm", "env_id", "seed", "env_steps", "wall_s", "final_eval_return", "best_eval_return",
                "return_convention", "versions", "commit"}


def _train(algo: str, out, steps: int = 300, extra: list[str] = ()) -> int:
    sets = [x for s in TINY[algo] for x in ("--set", s)]
    return main(["train", algo, "--env", "policygen-tests/Stub-v0", "--steps", str(steps), "--eval-every",
                 str(steps // 2), "--eval-episodes", "2", "--out", str(out), "--quiet", *sets, *extra])


def _rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", [*SB3, "udrl"])
def test_baseline_writes_a_valid_run_directory(algo, tmp_path, capsys):
    out = tmp_path / algo
    assert _train(algo, out) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and printed["final_eval_return"] == summary["final_eval_return"]
    assert summary["algorithm"] == algo and summary["env_steps"] >= 300
    assert json.loads((out / "config.json").read_text())["algorithm"] == algo
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    assert (out / "metrics.csv").read_text().splitlines()[0] == ",".join(METRIC_COLUMNS)
    rows = _rows(out)
    steps = [int(r["env_steps"]) for r in rows]
    assert len(rows) >= 2 and steps == sorted(steps) and steps[-1] == summary["env_steps"]
    assert all(np.isfinite(float(r["eval_return"])) and float(r["wall_s"]) > 0 for r in rows)
    assert float(rows[-1]["eval_return"]) == pytest.approx(summary["final_eval_return"], rel=1e-5)
    assert (out / "checkpoints" / "latest.safetensors").exists()


@pytest.mark.parametrize("argv, says", [
    (["train", "td3", "--env", "CartPole-v1"], "continuous Box action space"),
    (["train", "udrl", "--env", "NoSuchEnv-v0"], "unknown environment id"),
    (["train", "sac", "--env", "policygen-tests/Stub-v0", "--backend", "envpool"], "steps one Gymnasium"),
    (["train", "td3", "--env", "policygen-tests/Stub-v0", "--set", "nope=1"], "has no setting 'nope'"),
    (["train", "udrl", "--env", "policygen-tests/Stub-v0", "--tensorboard"], "not supported"),
    (["train", "udrl", "--env", "policygen-tests/Stub-v0", "--snapshots", "2"], "--snapshots is not supported"),
    (["train", "udrl", "--env", "policygen-tests/Stub-v0", "--set", "head=beta"], "head must be gaussian"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, says, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("policygen: error:") and says in err and len(err.splitlines()) == 1
    assert not out.exists()


def _interrupted(algo: str, out, monkeypatch, steps: int) -> None:
    """Train, killed (KeyboardInterrupt) right after the first checkpoint."""
    real = steploop._StepRun.checkpoint

    def once(self):
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(steploop._StepRun, "checkpoint", once)
    assert _train(algo, out, steps) == 130  # the CLI's exit code for an interrupt
    monkeypatch.setattr(steploop._StepRun, "checkpoint", real)


@pytest.mark.parametrize("algo", [pytest.param("td3", marks=needs_sb3), "udrl"])
def test_killed_run_resumes(algo, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    _interrupted(algo, out, monkeypatch, steps=400)
    assert len(_rows(out)) == 1 and not (out / "summary.json").exists()
    resume_run(str(out), quiet=True)
    rows = _rows(out)
    assert json.loads((out / "summary.json").read_text())["env_steps"] == int(rows[-1]["env_steps"]) >= 400
    assert len(rows) >= 2 and len({r["env_steps"] for r in rows}) == len(rows)  # no row twice
    if algo == "udrl":  # checkpoints at episode boundaries with every random state: exact
        _train(algo, tmp_path / "whole", 400)
        strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in _rows(tmp_path / "whole")]
        assert [{k: v for k, v in r.items() if k != "wall_s"} for r in rows] == strip


@pytest.mark.parametrize("algo", [pytest.param("td3", marks=needs_sb3), "udrl"])
def test_ctrl_c_stops_a_baseline_with_a_checkpoint_where_it_is(algo, tmp_path, monkeypatch, capsys, default_sigint):
    import os
    import signal

    from policygen.runs.rundir import RunDir

    out, real, sent = tmp_path / "stopped", steploop._StepRun.on_step, []

    def ctrl_c_at_250(self):
        if self.algo.env_steps >= 250 and not sent:  # between the evaluations (checkpoints) at 200 and 400
            sent.append(self.algo.env_steps)
            os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler only asks: the step (episode) ends
        return real(self)

    monkeypatch.setattr(steploop._StepRun, "on_step", ctrl_c_at_250)
    assert _train(algo, out, 400) == 130
    monkeypatch.setattr(steploop._StepRun, "on_step", real)
    assert "continue with: policygen train --resume" in capsys.readouterr().err
    assert json.loads((out / "status.json").read_text()) == {"status": "stopped", "reason": "interrupted"}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert len(_rows(out)) == 1 and not (out / "summary.json").exists()
    assert RunDir(str(out)).load_checkpoint()["env_steps"] == sent[0]  # not back at the evaluation at 200
    resume_run(str(out), quiet=True)
    assert json.loads((out / "summary.json").read_text())["env_steps"] >= 400
    if algo == "udrl":  # stopped at an episode boundary: the resumed run is the uninterrupted one
        _train(algo, tmp_path / "whole", 400)
        strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in _rows(tmp_path / "whole")]
        assert [{k: v for k, v in r.items() if k != "wall_s"} for r in _rows(out)] == strip


@needs_sb3
def test_tampered_sb3_checkpoint_is_not_unpickled(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupted("td3", out, monkeypatch, steps=400)
    model = sorted((out / "checkpoints" / "sb3").glob("model-*.zip"))[-1]
    model.write_bytes(model.read_bytes() + b"x")
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "SHA-256 differs" in err and "refusing to unpickle" in err


@needs_sb3
def test_sac_snapshots_feed_a_make_an_agent_data_set(tmp_path, capsys):
    out = tmp_path / "sac"
    assert _train("sac", out, extra=["--snapshots", "2"]) == 0
    snaps = sorted(p.name for p in (out / "checkpoints" / "sb3-snapshots").iterdir())
    assert snaps == ["model-0000000100.zip", "model-0000000200.zip"]  # kept past the checkpoints' pruning
    capsys.readouterr()
    argv = ["collect", str(out), "--sb3-sac", "--out", str(tmp_path / "ds"), "--copies", "1", "--backend", "gymnasium"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["records_written"] == 6  # 2 snapshots + the latest, 2 records each
    assert main([*argv, "--env", "InvertedPendulum-v5"]) == 2
    assert "trained on policygen-tests/Stub-v0, not --env InvertedPendulum-v5" in capsys.readouterr().err


@needs_sb3
def test_baseline_runs_are_refused_by_policy_commands(tmp_path, capsys):
    out = tmp_path / "ars"
    assert _train("ars-sb3", out) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    assert "step-based baseline" in capsys.readouterr().err


@pytest.mark.slow
def test_udrl_learns_and_follows_the_return_command(tmp_path):
    """On the stub (reward a per step, longer episodes for larger a: returns -5..15), UDRL must beat the
    untrained and random policies' ~0 and achieve more when commanded more."""
    from policygen.algorithms.udrl import UDRL, UDRLConfig
    from policygen.envs.make import env_info

    env_id = "policygen-tests/Stub-v0"
    cfg = UDRLConfig(hidden=(32, 32), n_warmup_episodes=20, n_updates_per_iter=50, n_episodes_per_iter=10,
                     last_few=20)
    algo = UDRL(cfg, env_info(env_id), seed=0)
    algo.setup(RunConfig(env_id=env_id), tmp_path, None)
    env = gym.make(env_id)
    before = np.mean([algo.command_episode(env, 10.0, 12, seed=i) for i in range(5)])
    algo.learn(6000, lambda: True)
    low = np.mean([algo.command_episode(env, -2.0, 6, seed=i) for i in range(5)])
    high = np.mean([algo.command_episode(env, 12.0, 13, seed=i) for i in range(5)])
    evaluated = steploop.evaluate_step_algo(algo, env, seed=100, episodes=5)["eval_return"]
    algo.close()
    assert evaluated > 5.0 and evaluated > before + 4.0, (before, evaluated)
    assert high > low + 3.0, (low, high)


def test_udrl_state_round_trips(tmp_path):
    from policygen.algorithms.udrl import UDRL, UDRLConfig
    from policygen.envs.make import env_info

    info = env_info("policygen-tests/Stub-v0")
    cfg = UDRLConfig(hidden=(8,), n_warmup_episodes=3, n_updates_per_iter=2, n_episodes_per_iter=2)
    a = UDRL(cfg, info, seed=1)
    a.setup(RunConfig(env_id=info.env_id), tmp_path, None)
    a.learn(200, lambda: True)
    b = UDRL(cfg, info, seed=99)
    b.setup(RunConfig(env_id=info.env_id), tmp_path, a.state_dict())
    assert [e["return"] for e in a.episodes] == [e["return"] for e in b.episodes]
    obs = np.array([0.3, 1.0])
    a.begin_episode()
    b.begin_episode()
    assert np.array_equal(a.act(obs), b.act(obs))
    a.close()
    b.close()
