"""policygen bench suite: the resumable queue (finished cells never rerun, killed ones continue), bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policygen.analysis.runs_list import _locked
from policygen.analysis.suites import SUITES, cells, load_suite
from policygen.cli import main

# Pendulum-v1: a continuous classic-control task the training subprocesses can make (no test-only env)
TINY = {"groups": [{"algos": ["ars", "udrl"], "envs": ["Pendulum-v1"], "seeds": [0], "steps": 400,
                    "eval_every": 200, "eval_episodes": 1,
                    "set": {"udrl": ["hidden=8", "n_warmup_episodes=1", "n_updates_per_iter=2",
                                     "n_episodes_per_iter=1"]}}]}


@pytest.fixture
def suite_file(tmp_path) -> str:
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(TINY))
    return str(p)


def _run(suite_file, out, capsys, jobs="2") -> dict:
    assert main(["bench", "suite", suite_file, "--out", str(out), "--jobs", jobs]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_killed_cells_continue_and_finished_ones_are_never_rerun(suite_file, tmp_path, capsys, monkeypatch):
    """A cell killed after its config was written resumes; a folder without a config starts again; a second
    run of the suite reruns nothing (one test, so the training subprocesses start only twice)."""
    from policygen.algorithms import steploop

    out = tmp_path / "suite"
    udrl = out / "runs" / "Pendulum-v1-udrl-s0"
    real = steploop._StepRun.checkpoint

    def once(self):
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(steploop._StepRun, "checkpoint", once)
    cell = next(c for c in cells(load_suite(suite_file)) if c.algo == "udrl")
    assert main(cell.argv(udrl)) == 130
    monkeypatch.setattr(steploop._StepRun, "checkpoint", real)
    rows_before = (udrl / "metrics.csv").read_text().splitlines()
    ars = out / "runs" / "Pendulum-v1-ars-s0"
    ars.mkdir(parents=True)
    (ars / "stray.tmp").write_text("killed before config.json")
    capsys.readouterr()
    result = _run(suite_file, out, capsys)
    assert result["resumed"] == ["Pendulum-v1-udrl-s0"] and result["started"] == ["Pendulum-v1-ars-s0"]
    assert not result["failed"]
    assert (udrl / "metrics.csv").read_text().splitlines()[: len(rows_before)] == rows_before
    assert "resumed: policygen train --resume" in (out / "logs" / "Pendulum-v1-udrl-s0.log").read_text()
    assert all((p / "summary.json").exists() for p in (ars, udrl))
    # the 2 jobs share the CPUs out instead of each taking every core
    threads = json.loads((ars / "config.json").read_text())["run"]["env_threads"]
    assert threads == max(1, (os.cpu_count() or 1) // 2)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")}
    again = _run(suite_file, out, capsys)
    assert again["skipped_done"] == 2 and again["started"] == again["resumed"] == []
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")}
    assert main(["bench", "suite", suite_file, "--out", str(out), "--list"]) == 0
    assert capsys.readouterr().out.count(" done ") == 2


@pytest.mark.slow
def test_sigkilled_suite_continues(suite_file, tmp_path, capsys):
    out = tmp_path / "suite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "policygen", "bench", "suite", suite_file, "--out", str(out),
                             "--jobs", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("runs/*/config.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the training child gets SIGTERM from the kernel (PR_SET_PDEATHSIG), finishes its iteration and exits;
    # until then it holds its run, and a suite started now would leave that cell to it (running elsewhere)
    deadline = time.time() + 120
    while time.time() < deadline and any(_locked(p) for p in out.glob("runs/*")):
        time.sleep(0.2)
    result = _run(suite_file, out, capsys)
    assert not result["failed"] and result["cells"] == 2 and not result["running_elsewhere"]
    assert len(list(out.glob("runs/*/summary.json"))) == 2


@pytest.mark.parametrize("argv, says", [
    (["bench", "suite", "nope", "--out", "X"], "unknown suite 'nope'; suites: smoke, paper-small, paper-mujoco"),
    (["bench", "suite", "smoke", "--out", "X", "--algos", "td3,foo"], "--algos foo: not in this suite's grid"),
    (["bench", "suite", "paper-small", "--out", "X", "--envs", "Hopper-v5"], "it has InvertedPendulum-v5"),
    (["bench", "suite", "smoke", "--out", "X", "--seeds", "7"], "--seeds 7"),
])
def test_bad_suite_input_is_one_line(argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("policygen: error:") and says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "X").exists()


def test_bad_suite_file_and_other_suite_folder(tmp_path, capsys, suite_file):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"groups": [{"algos": ["td3"], "envs": ["Pendulum-v1"], "seedz": [0], "steps": 1}]}))
    assert main(["bench", "suite", str(bad), "--out", str(tmp_path / "o"), "--list"]) == 2
    assert "unknown keys: ['seedz']" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "suite.json").write_text(json.dumps({"suite": "smoke"}))
    assert main(["bench", "suite", suite_file, "--out", str(tmp_path / "o")]) == 2
    assert "holds suite 'smoke'" in capsys.readouterr().err


def test_declared_suites_are_what_the_issue_asks():
    small = cells(SUITES["paper-small"])
    assert len(small) == 8 * 2 * 5 and {c.steps for c in small} == {100_000}
    assert {c.env for c in small} == {"InvertedPendulum-v5", "MountainCarContinuous-v0"}
    mujoco = cells(SUITES["paper-mujoco"])
    assert {c.steps for c in mujoco if c.algo in ("gogepo", "udrlpg", "ars")} == {3_000_000}
    assert {c.env for c in mujoco} == {"Swimmer-v5", "Hopper-v5"} and {c.seed for c in mujoco} == {0, 1, 2}


def test_ctrl_c_on_a_suite_lets_its_cells_checkpoint_where_they_are_and_the_suite_continues(tmp_path, capsys):
    """Ctrl-C reaches the suite's whole process group. The cells run in their own sessions, so each gets exactly
    one SIGTERM from the suite: it finishes its iteration, checkpoints and exits (two signals would stop it at
    once, losing the rows since its last checkpoint). The same command then continues the cell from there."""
    long = {"groups": [{"algos": ["ars"], "envs": ["Pendulum-v1"], "seeds": [0], "steps": 60000,
                        "eval_every": 60000, "eval_episodes": 1, "set": {"ars": ["n_directions=2", "top=2"]}}]}
    suite = tmp_path / "long.json"
    suite.write_text(json.dumps(long))
    out = tmp_path / "suite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    # as a terminal would: SIGINT not ignored (a background job's children inherit SIG_IGN), own process group
    argv = [sys.executable, "-m", "policygen", "bench", "suite", str(suite), "--out", str(out), "--jobs", "1"]
    start = f"import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, {argv!r})"
    proc = subprocess.Popen([sys.executable, "-c", start], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "runs" / "Pendulum-v1-ars-s0" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "[suite] stopping: 1 running cell" in err, err
    status = json.loads((metrics.parent / "status.json").read_text())
    assert status == {"status": "stopped", "reason": "SIGTERM"} and not (metrics.parent / "summary.json").exists()
    before = metrics.read_text().splitlines()
    result = _run(str(suite), out, capsys, jobs="1")
    assert result["resumed"] == ["Pendulum-v1-ars-s0"] and not result["failed"]
    after = metrics.read_text().splitlines()
    assert len(after) > len(before) >= 3 and after[: len(before)] == before
