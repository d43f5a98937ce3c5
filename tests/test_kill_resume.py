"""SIGKILL training runs of every algorithm at random moments (also inside checkpoint writes), resume each
time with ``policygen train --resume RUN_DIR``, and check the result equals an uninterrupted run's, row for
row: 7 kills per algorithm, 21 in all."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

COMMON = ["--backend", "gymnasium", "--num-envs", "8", "--checkpoint-every", "1", "--eval-episodes", "2", "--quiet"]
TRAIN = {
    "ars": ["ars", "--env", "InvertedPendulum-v5", "--steps", "20000", "--eval-every", "5000", *COMMON,
            "--set", "n_directions=2", "--set", "top=2"],
    "gogepo": ["gogepo", "--env", "InvertedPendulum-v5", "--steps", "6000", "--eval-every", "2000", *COMMON,
               "--set", "hidden=16,16", "--set", "chunk=4", "--set", "generator_hidden=32,32",
               "--set", "evaluator_hidden=32,32", "--set", "n_probe=8"],
    "udrlpg": ["udrlpg", "--env", "InvertedPendulum-v5", "--steps", "1500", "--eval-every", "500", *COMMON,
               "--set", "policy_hidden=16,16", "--set", "chunk=4", "--set", "embed_dim=4",
               "--set", "generator_hidden=32,32", "--set", "rollout_steps=0",
               "--set", "rollout_repeats=1", "--set", "update_repeats=8"],
}
KILLS = 7


def cli(*args):
    return [sys.executable, "-m", "policygen", *args]


def rows(run_dir):
    if not os.path.exists(os.path.join(run_dir, "metrics.csv")):  # a run being created
        return []
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("algo", list(TRAIN))
def test_random_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path, algo):
    ref = str(tmp_path / "ref")
    subprocess.run(cli("train", *TRAIN[algo], "--out", ref), check=True, capture_output=True)
    n_rows = len(rows(ref))
    iteration_s = json.load(open(os.path.join(ref, "summary.json")))["wall_s"] / n_rows
    assert n_rows >= 2 * KILLS, n_rows
    run = str(tmp_path / "killed")
    rng = random.Random(0)
    kills, finished = 0, False
    while not finished:
        started = os.path.exists(os.path.join(run, "config.json"))
        args = cli("train", "--resume", run) if started else cli("train", *TRAIN[algo], "--out", run, "--force")
        before = len(rows(run)) if started else 0
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < KILLS:
            # once this process has logged a row of its own, kill it at a random moment of an iteration:
            # in the rollout, the updates, the metrics append or the checkpoint write (every iteration)
            while proc.poll() is None and len(rows(run)) <= before:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5) * iteration_s)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                # the kill can land after the summary was written but before the process exited: the run is
                # complete then, and there is nothing left to resume
                finished = os.path.exists(os.path.join(run, "summary.json"))
                continue
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        finished = True
    assert kills == KILLS
    assert rows(run) == rows(ref)
    a, b = (json.load(open(os.path.join(d, "summary.json"))) for d in (run, ref))
    assert a["final_eval_return"] == b["final_eval_return"] and a["env_steps"] == b["env_steps"]
