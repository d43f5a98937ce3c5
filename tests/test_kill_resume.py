"""SIGKILL a training run at random moments (also inside checkpoint writes), resume it each time with
``policygen train --resume RUN_DIR``, and check the result equals an uninterrupted run's, row for row."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

TRAIN = ["ars", "--env", "Swimmer-v5", "--steps", "100000", "--backend", "gymnasium", "--num-envs", "8",
         "--checkpoint-every", "1", "--eval-every", "20000", "--eval-episodes", "2", "--quiet"]


def cli(*args):
    return [sys.executable, "-m", "policygen", *args]


def rows(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_random_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path):
    ref = str(tmp_path / "ref")
    subprocess.run(cli("train", *TRAIN, "--out", ref), check=True, capture_output=True)
    run = str(tmp_path / "killed")
    rng = random.Random(0)
    kills, finished = 0, False
    while not finished:
        started = os.path.exists(os.path.join(run, "config.json"))
        args = cli("train", "--resume", run) if started else cli("train", *TRAIN, "--out", run, "--force")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 6:
            time.sleep(rng.uniform(1.5, 4.0))  # interpreter start-up is ~1.5 s; training is a few seconds
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                # the kill can land after the summary was written but before the process exited: the run is
                # complete then, and there is nothing left to resume
                finished = os.path.exists(os.path.join(run, "summary.json"))
                continue
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        finished = True
    assert kills >= 3
    assert rows(run) == rows(ref)
    a, b = (json.load(open(os.path.join(d, "summary.json"))) for d in (run, ref))
    assert a["final_eval_return"] == b["final_eval_return"] and a["env_steps"] == b["env_steps"]
